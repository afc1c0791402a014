"""GD-Net: the plain CNN of gradient descent, ``x[k+1] = T(x[k])`` (VGG-style: no shortcut anywhere).

It has no coefficients; it is the baseline that the accelerated families improve on.
"""

from typing import Sequence

from timm.models import generate_default_cfgs, register_model

from ..rules import gd
from .builder import build, cfg, cifar_cfg
from .network import ResidualOptNet
from .presets import cifar_resnet, resnet

__all__ = ['GDNet']


class GDNet(ResidualOptNet):
    """A ResNet-shaped network without shortcuts: every block is ``relu(T(x))``."""

    def __init__(self, steps: Sequence[int], block: str = 'basic', **kwargs):
        super().__init__(gd, steps, block=block, shortcut=False, **kwargs)


default_cfgs = generate_default_cfgs(
    {
        'gd_net_56_cifar': cifar_cfg(),
        'gd_net_34': cfg(),
    }
)


@register_model
def gd_net_56_cifar(pretrained: bool = False, **kwargs) -> GDNet:
    """Plain 56-layer CIFAR network (ResNet-56 layout without shortcuts)."""
    return build(GDNet, 'gd_net_56_cifar', pretrained, **dict(cifar_resnet(56), **kwargs))


@register_model
def gd_net_34(pretrained: bool = False, **kwargs) -> GDNet:
    """Plain 34-layer network (ResNet-34 layout without shortcuts)."""
    return build(GDNet, 'gd_net_34', pretrained, **dict(resnet(34), **kwargs))
