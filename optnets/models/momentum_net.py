"""Momentum ResNet (Sander et al., ICML 2021): ``v <- g*v + (1-g)*T(x)``, ``x <- x + v``, as the rule
``x[k+1] = (1 - g)*T(x[k]) + (1 + g)*x[k] - g*x[k-1]``: heavy ball with beta = g and T scaled by 1 - g.

As in the paper, g = 0.9 is fixed (``learn_coeffs=False``) and nothing follows the sum (no post-activation), so
each step is invertible; ``learn_coeffs=True`` learns g per step. The forward equals the ``momentumnet``
package's ``MomentumNet`` given the same T (tests/test_lemmas.py). ResNet checkpoints load (the same layers).
"""

from typing import Sequence

from timm.models import generate_default_cfgs, register_model

from ..rules import momentum
from .builder import build, cfg, cifar_cfg
from .checkpoints import resnet_checkpoint_filter
from .network import ResidualOptNet
from .presets import cifar_resnet, resnet

__all__ = ['MomentumResNet']


class MomentumResNet(ResidualOptNet):
    """A ResNet whose blocks after each stage's first follow Momentum ResNets' velocity update."""

    def __init__(
        self, steps: Sequence[int], block: str = 'basic', learn_coeffs: bool = False, step_act: bool = False, **kwargs
    ):
        super().__init__(momentum, steps, block=block, learn_coeffs=learn_coeffs, step_act=step_act, **kwargs)


def checkpoint_filter_fn(state_dict: dict, model: MomentumResNet) -> dict:
    """ResNet checkpoints: the same layers (the ResNet skeleton's key map)."""
    return resnet_checkpoint_filter(state_dict, model)


default_cfgs = generate_default_cfgs(
    {
        'momentum_net_20_cifar': cifar_cfg(),
        'momentum_net_56_cifar': cifar_cfg(),
        'momentum_net_110_cifar': cifar_cfg(),
        'momentum_net_18': cfg(),
        'momentum_net_34': cfg(),
        'momentum_net_50': cfg(),
    }
)


@register_model
def momentum_net_20_cifar(pretrained: bool = False, **kwargs) -> MomentumResNet:
    """Momentum ResNet-20 for CIFAR (n=3)."""
    return build(
        MomentumResNet, 'momentum_net_20_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(20), **kwargs)
    )


@register_model
def momentum_net_56_cifar(pretrained: bool = False, **kwargs) -> MomentumResNet:
    """Momentum ResNet-56 for CIFAR (n=9)."""
    return build(
        MomentumResNet, 'momentum_net_56_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(56), **kwargs)
    )


@register_model
def momentum_net_110_cifar(pretrained: bool = False, **kwargs) -> MomentumResNet:
    """Momentum ResNet-110 for CIFAR (n=18)."""
    return build(
        MomentumResNet, 'momentum_net_110_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_resnet(110), **kwargs)
    )


@register_model
def momentum_net_18(pretrained: bool = False, **kwargs) -> MomentumResNet:
    """Momentum ResNet-18 (ResNet-18 layout)."""
    return build(MomentumResNet, 'momentum_net_18', pretrained, checkpoint_filter_fn, **dict(resnet(18), **kwargs))


@register_model
def momentum_net_34(pretrained: bool = False, **kwargs) -> MomentumResNet:
    """Momentum ResNet-34 (ResNet-34 layout)."""
    return build(MomentumResNet, 'momentum_net_34', pretrained, checkpoint_filter_fn, **dict(resnet(34), **kwargs))


@register_model
def momentum_net_50(pretrained: bool = False, **kwargs) -> MomentumResNet:
    """Momentum ResNet-50 (ResNet-50 layout, bottleneck T)."""
    return build(MomentumResNet, 'momentum_net_50', pretrained, checkpoint_filter_fn, **dict(resnet(50), **kwargs))
