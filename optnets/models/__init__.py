"""The timm families: importing this registers every optnets model with timm."""
from .admm_net import ADMMNet
from .custom import register
from .agd_net import AGDNet
from .gd_net import GDNet
from .hb_net import HBNet
from .lm_net import LMResNet
from .momentum_net import MomentumResNet
from .network import OptNet

FAMILIES = ('gd_net', 'hb_net', 'agd_net', 'admm_net', 'momentum_net', 'lm_net')
"""The family modules: timm.list_models(module=FAMILIES) lists every optnets model."""

__all__ = ['FAMILIES', 'OptNet', 'GDNet', 'HBNet', 'AGDNet', 'ADMMNet', 'MomentumResNet', 'LMResNet', 'register']
