"""LPOM: backprop-free training of feed-forward networks by lifted proximal operator machines."""

from ..extras import require

require('lpom')

from . import solver
from .activations import ACTIVATIONS, Activation, get_activation
from .conv import LPOMConv
from .estimator import LPOM
from .topology import stage_specs

__all__ = ['LPOM', 'LPOMConv', 'stage_specs', 'Activation', 'ACTIVATIONS', 'get_activation', 'solver']
