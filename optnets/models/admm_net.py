"""ADMM-Net: two streams coupled like linearised ADMM on ``min f(y) + f(x)`` s.t. ``y = x``::

    y[k+1] = T(y[k]) + a1*y[k] + a2*x[k] - a3*sum_t (y[t] - x[t])
    x[k+1] = T(x[k]) + b1*x[k] + b2*y[k] + b3*y[k+1] + b4*sum_t (y[t] - x[t])

``special`` (a1 = a2 = b1 = b2 = 1/2, the rest 0) is the merge-and-run network (DMRNet); ``theory`` is linearised
ADMM with T the increment of its step: the dual enters the streams with opposite signs, kept as one running
difference (memory flat in depth), and the x update reads the y already updated this step. Each step has a T per
stream, so the presets use about half as many steps as the ResNet they are sized against: ``admm_net_34`` /
``admm_net_50`` stay within 10% of ResNet-34 / ResNet-50 in parameters and FLOPs. Between stages the two streams
travel as their mean.
"""

from typing import Sequence

from timm.models import generate_default_cfgs, register_model

from ..rules import admm
from .builder import build, cfg, cifar_cfg
from .network import ResidualOptNet
from .presets import cifar_resnet, resnet

__all__ = ['ADMMNet']


class ADMMNet(ResidualOptNet):
    """A dual-stream residual network whose streams follow the ADMM rule."""

    def __init__(self, steps: Sequence[int], block: str = 'basic', **kwargs):
        super().__init__(admm, steps, block=block, **kwargs)


default_cfgs = generate_default_cfgs(
    {
        'admm_net_56_cifar': cifar_cfg(),
        'admm_net_34': cfg(),
        'admm_net_50': cfg(),
    }
)


@register_model
def admm_net_56_cifar(pretrained: bool = False, **kwargs) -> ADMMNet:
    """ADMM-Net for CIFAR sized like ResNet-56: a transition block and 4 two-stream steps per stage."""
    return build(ADMMNet, 'admm_net_56_cifar', pretrained, **{**cifar_resnet(56), 'steps': (4, 4, 4), **kwargs})


@register_model
def admm_net_34(pretrained: bool = False, **kwargs) -> ADMMNet:
    """ADMM-Net sized like ResNet-34 (parameters within 10%): a step has two streams, so fewer steps."""
    return build(ADMMNet, 'admm_net_34', pretrained, **{**resnet(34), 'steps': (1, 2, 2, 1), **kwargs})


@register_model
def admm_net_50(pretrained: bool = False, **kwargs) -> ADMMNet:
    """ADMM-Net sized like ResNet-50 (bottleneck T)."""
    return build(ADMMNet, 'admm_net_50', pretrained, **{**resnet(50), 'steps': (1, 2, 2, 1), **kwargs})
