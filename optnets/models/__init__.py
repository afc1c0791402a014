"""The timm families: importing this registers every optnets model with timm."""

from ..families import FAMILIES, Family, family_of
from .admm_net import ADMMNet
from .custom import register, rule_model
from .agd_net import AGDNet
from .gd_net import GDNet
from .hb_net import HBNet
from .lm_net import LMResNet
from .momentum_net import MomentumResNet
from .network import DenseOptNet, OptNet, ResidualOptNet


__all__ = [
    'FAMILIES',
    'Family',
    'family_of',
    'OptNet',
    'ResidualOptNet',
    'DenseOptNet',
    'GDNet',
    'HBNet',
    'AGDNet',
    'ADMMNet',
    'MomentumResNet',
    'LMResNet',
    'register',
    'rule_model',
]
