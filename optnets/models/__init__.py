"""The timm families: importing this registers every optnets model with timm."""
import timm

from .admm_net import ADMMNet
from .custom import register
from .agd_net import AGDNet
from .gd_net import GDNet
from .hb_net import HBNet
from .lm_net import LMResNet
from .momentum_net import MomentumResNet
from .network import DenseOptNet, OptNet, ResidualOptNet

FAMILIES = ('gd_net', 'hb_net', 'agd_net', 'admm_net', 'momentum_net', 'lm_net')
"""The family modules: timm.list_models(module=FAMILIES) lists every optnets model."""


def family_of(name: str) -> str:
    """The family module of a registered model name (a tag after the dot is ignored), from timm's registry."""
    arch = name.split('.')[0]
    family = next((f for f in FAMILIES if arch in timm.list_models(module=f)), None)
    if family is None:
        raise LookupError(f'{name!r} is not an optnets model: `optnets models` lists them')
    return family


__all__ = ['FAMILIES', 'family_of', 'OptNet', 'ResidualOptNet', 'DenseOptNet', 'GDNet', 'HBNet', 'AGDNet', 'ADMMNet',
           'MomentumResNet', 'LMResNet',
           'register']
