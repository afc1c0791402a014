"""AGD-Net: DenseNet generalised by Nesterov's method in history form,
``x[k+1] = sum_j a[j]*T(x[j]) + sum_j b[j]*x[j]``.

With ``a = 1, b = 0`` (``special``) it is exactly DenseNet: the transform sum runs as one conv over the
concatenated history with each slice scaled by ``a[j]`` (linear-head fusion), so timm and torchvision DenseNet
checkpoints load through ``checkpoint_filter_fn``. The ``b[j]*x[j]`` sums read the steps' own iterates (the
stage input ``x[0]`` has another width).
"""

from typing import Sequence

from timm.models import generate_default_cfgs, register_model

from ..rules import agd
from ..weights.registry import pretrained_cfgs
from .builder import build, cfg, cifar_cfg
from .checkpoints import keep_missing_coefficients, rename
from .network import DenseOptNet
from .presets import cifar_densenet, densenet

__all__ = ['AGDNet']


class AGDNet(DenseOptNet):
    """A DenseNet whose layers follow the AGD history rule."""

    def __init__(
        self, steps: Sequence[int], growth_rate: int = 32, bn_size: int = 4, compression: float = 0.5, **kwargs
    ):
        super().__init__(agd, steps, growth_rate=growth_rate, bn_size=bn_size, compression=compression, **kwargs)


DENSENET_KEYS = [
    # torchvision's legacy names: norm.1 -> norm1
    (
        r'^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$',
        lambda m: m[1] + m[2],
    ),
]
DENSENET_STAGES = [
    (r'^features\.conv0\.', 'stem.conv.'),
    (r'^features\.norm0\.', 'stem.bn.'),
    (r'^features\.denseblock(\d+)\.denselayer(\d+)\.', lambda m: f'stages.{int(m[1]) - 1}.T_x.{int(m[2]) - 1}.'),
    (r'^features\.transition(\d+)\.', lambda m: f'stages.{m[1]}.transition.'),
    (r'^features\.norm5\.', 'final_norm.'),
    (r'^classifier\.', 'fc.'),
]


def checkpoint_filter_fn(state_dict: dict, model: AGDNet) -> dict:
    """Map a timm/torchvision DenseNet state dict onto AGD-Net."""
    state_dict = state_dict.get('state_dict', state_dict)
    if 'features.conv0.weight' not in state_dict:
        return state_dict
    state_dict = rename(rename(state_dict, DENSENET_KEYS), DENSENET_STAGES)
    return keep_missing_coefficients(state_dict, model)


default_cfgs = generate_default_cfgs(
    {
        'agd_net_40_cifar': cifar_cfg(),
        'agd_net_52_cifar': cifar_cfg(),
        'agd_net_121': cfg(),
        'agd_net_169': cfg(),
        'agd_net_201': cfg(),
        **pretrained_cfgs('agd_net', cfg),
    }
)


@register_model
def agd_net_40_cifar(pretrained: bool = False, **kwargs) -> AGDNet:
    """AGD-Net-40 for CIFAR (DenseNet L=40, k=12)."""
    return build(AGDNet, 'agd_net_40_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_densenet(40), **kwargs))


@register_model
def agd_net_52_cifar(pretrained: bool = False, **kwargs) -> AGDNet:
    """AGD-Net-52 for CIFAR (DenseNet L=52, k=12)."""
    return build(AGDNet, 'agd_net_52_cifar', pretrained, checkpoint_filter_fn, **dict(cifar_densenet(52), **kwargs))


@register_model
def agd_net_121(pretrained: bool = False, **kwargs) -> AGDNet:
    """AGD-Net-121 (DenseNet-121 layout)."""
    return build(AGDNet, 'agd_net_121', pretrained, checkpoint_filter_fn, **dict(densenet(121), **kwargs))


@register_model
def agd_net_169(pretrained: bool = False, **kwargs) -> AGDNet:
    """AGD-Net-169 (DenseNet-169 layout)."""
    return build(AGDNet, 'agd_net_169', pretrained, checkpoint_filter_fn, **dict(densenet(169), **kwargs))


@register_model
def agd_net_201(pretrained: bool = False, **kwargs) -> AGDNet:
    """AGD-Net-201 (DenseNet-201 layout)."""
    return build(AGDNet, 'agd_net_201', pretrained, checkpoint_filter_fn, **dict(densenet(201), **kwargs))
