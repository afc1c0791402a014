"""The normalisation of each dataset the zoo's presets and the recipes use (as ``timm.data.constants``): one home
for the numbers that a pretrained cfg, a data module and a model card must agree on."""

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
