"""LM-ResNet (Lu et al., ICML 2018): the linear two-step scheme ``x[k+1] = T(x[k]) + (1 - c)*x[k] + c*x[k-1]``
with a learnable c per step (the paper's k_n).

With c = 0 (``special``, and ``theory``: forward Euler) it is exactly ResNet, so ResNet checkpoints load with
identical logits, and c learns from there.
"""

from typing import Sequence

from timm.models import generate_default_cfgs, register_model

from ..rules import linear_multistep
from .builder import build, cfg, cifar_cfg
from .checkpoints import resnet_checkpoint_filter
from .network import ResidualOptNet
from .presets import cifar_resnet, resnet

__all__ = ['LMResNet']


class LMResNet(ResidualOptNet):
    """A ResNet whose blocks after each stage's first follow the linear two-step scheme."""

    def __init__(self, steps: Sequence[int], block: str = 'basic', **kwargs):
        super().__init__(linear_multistep, steps, block=block, **kwargs)


def checkpoint_filter_fn(state_dict: dict, model: LMResNet) -> dict:
    """ResNet checkpoints: the same layers (the ResNet skeleton's key map)."""
    return resnet_checkpoint_filter(state_dict, model)


default_cfgs = generate_default_cfgs(
    {
        'lm_net_20_cifar': cifar_cfg(),
        'lm_net_56_cifar': cifar_cfg(),
        'lm_net_110_cifar': cifar_cfg(),
        'lm_net_18': cfg(),
        'lm_net_34': cfg(),
        'lm_net_50': cfg(),
    }
)


@register_model
def lm_net_20_cifar(pretrained: bool = False, **kwargs) -> LMResNet:
    """LM-ResNet-20 for CIFAR (n=3)."""
    return build(LMResNet, 'lm_net_20_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(20), **kwargs))


@register_model
def lm_net_56_cifar(pretrained: bool = False, **kwargs) -> LMResNet:
    """LM-ResNet-56 for CIFAR (n=9)."""
    return build(LMResNet, 'lm_net_56_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(56), **kwargs))


@register_model
def lm_net_110_cifar(pretrained: bool = False, **kwargs) -> LMResNet:
    """LM-ResNet-110 for CIFAR (n=18)."""
    return build(LMResNet, 'lm_net_110_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(110), **kwargs))


@register_model
def lm_net_18(pretrained: bool = False, **kwargs) -> LMResNet:
    """LM-ResNet-18 (ResNet-18 layout)."""
    return build(LMResNet, 'lm_net_18', pretrained, checkpoint_filter_fn, **dict(resnet(18), **kwargs))


@register_model
def lm_net_34(pretrained: bool = False, **kwargs) -> LMResNet:
    """LM-ResNet-34 (ResNet-34 layout)."""
    return build(LMResNet, 'lm_net_34', pretrained, checkpoint_filter_fn, **dict(resnet(34), **kwargs))


@register_model
def lm_net_50(pretrained: bool = False, **kwargs) -> LMResNet:
    """LM-ResNet-50 (ResNet-50 layout, bottleneck T)."""
    return build(LMResNet, 'lm_net_50', pretrained, checkpoint_filter_fn, **dict(resnet(50), **kwargs))
