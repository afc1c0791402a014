"""LPOM: backprop-free training of feed-forward networks by lifted proximal operator machines."""

from ..extras import require

require('lpom')

from . import layers, solver
from .activations import ACTIVATIONS, Activation, get_activation
from .estimator import LPOM, BaseLPOM, LPOMConv
from .topology import stage_specs

__all__ = [
    'LPOM',
    'LPOMConv',
    'BaseLPOM',
    'stage_specs',
    'Activation',
    'ACTIVATIONS',
    'get_activation',
    'layers',
    'solver',
]
