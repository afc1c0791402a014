"""HB-Net: ResNet generalised by the heavy-ball method, ``x[k+1] = T(x[k]) + b1*x[k] + b2*x[k-1]``.

T reads as the increment ``G - I`` of the algorithm's step G. With ``b1 = 1, b2 = 0`` (the ``special``
initialisation) it is exactly ResNet, so timm and torchvision ResNet checkpoints load through
``checkpoint_filter_fn``; ``learn_coeffs=False`` fixes those values (the baseline). ``theory`` is heavy ball
itself, ``b1 = 1 + beta, b2 = -beta`` with beta = 0.9 (also Momentum ResNet's form, without its 1 - g on T).
"""

from typing import Sequence

from timm.models import generate_default_cfgs, register_model

from ..rules import heavy_ball
from ..weights.registry import pretrained_cfgs
from .builder import build, cfg, cifar_cfg
from .checkpoints import resnet_checkpoint_filter
from .network import ResidualOptNet
from .presets import cifar_resnet, resnet

__all__ = ['HBNet']


class HBNet(ResidualOptNet):
    """A ResNet whose blocks after each stage's first follow the heavy-ball rule."""

    def __init__(self, steps: Sequence[int], block: str = 'basic', **kwargs):
        super().__init__(heavy_ball, steps, block=block, **kwargs)


def checkpoint_filter_fn(state_dict: dict, model: HBNet) -> dict:
    return resnet_checkpoint_filter(state_dict, model)


default_cfgs = generate_default_cfgs(
    {
        **pretrained_cfgs('hb_net', cfg),  # first: an architecture's first tag with weights is its default
        'hb_net_20_cifar': cifar_cfg(),  # untrained, CIFAR's 3 channels (the default .fmnist tags have 1)
        'hb_net_56_cifar': cifar_cfg(),
        'hb_net_110_cifar': cifar_cfg(),
        'hb_net_18': cfg(),
        'hb_net_34': cfg(),
        'hb_net_50': cfg(),
        'hb_net_101': cfg(),
    }
)


@register_model
def hb_net_20_cifar(pretrained: bool = False, **kwargs) -> HBNet:
    """HB-Net-20 for CIFAR (ResNet-20 layout, n=3)."""
    return build(HBNet, 'hb_net_20_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(20), **kwargs))


@register_model
def hb_net_56_cifar(pretrained: bool = False, **kwargs) -> HBNet:
    """HB-Net-56 for CIFAR (ResNet-56 layout, n=9)."""
    return build(HBNet, 'hb_net_56_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(56), **kwargs))


@register_model
def hb_net_110_cifar(pretrained: bool = False, **kwargs) -> HBNet:
    """HB-Net-110 for CIFAR (ResNet-110 layout, n=18)."""
    return build(HBNet, 'hb_net_110_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(110), **kwargs))


@register_model
def hb_net_18(pretrained: bool = False, **kwargs) -> HBNet:
    """HB-Net-18 (ResNet-18 layout)."""
    return build(HBNet, 'hb_net_18', pretrained, checkpoint_filter_fn, **dict(resnet(18), **kwargs))


@register_model
def hb_net_34(pretrained: bool = False, **kwargs) -> HBNet:
    """HB-Net-34 (ResNet-34 layout)."""
    return build(HBNet, 'hb_net_34', pretrained, checkpoint_filter_fn, **dict(resnet(34), **kwargs))


@register_model
def hb_net_50(pretrained: bool = False, **kwargs) -> HBNet:
    """HB-Net-50 (ResNet-50 layout, bottleneck T)."""
    return build(HBNet, 'hb_net_50', pretrained, checkpoint_filter_fn, **dict(resnet(50), **kwargs))


@register_model
def hb_net_101(pretrained: bool = False, **kwargs) -> HBNet:
    """HB-Net-101 (ResNet-101 layout, bottleneck T)."""
    return build(HBNet, 'hb_net_101', pretrained, checkpoint_filter_fn, **dict(resnet(101), **kwargs))
