"""The timm families: importing this registers every optnets model with timm."""
from .admm_net import ADMMNet
from .custom import register
from .agd_net import AGDNet
from .gd_net import GDNet
from .hb_net import HBNet
from .network import OptNet

__all__ = ['OptNet', 'GDNet', 'HBNet', 'AGDNet', 'ADMMNet', 'register']
