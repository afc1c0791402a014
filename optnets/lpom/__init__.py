"""LPOM: backprop-free training of feed-forward networks by lifted proximal operator machines."""
from . import solver
from .activations import ACTIVATIONS, Activation, get_activation
from .conv import LPOMConv
from .estimator import LPOM

__all__ = ['LPOM', 'LPOMConv', 'Activation', 'ACTIVATIONS', 'get_activation', 'solver']
