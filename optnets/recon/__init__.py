"""Reconstruction networks: unrolled algorithms over deepinv's physics, from the same compiler as the zoo.

A rule's ``T`` is one phase of a proximal gradient method on ``1/2 ||A x - y||^2 + g(x)``: a gradient step on the
data term through the physics, then a learned proximal map (:class:`DataStep`), read as the rule says (its whole
step, or its increment). Gradient descent's rule is then ISTA, Nesterov's FISTA, and any rule the language takes is
an unrolled reconstruction network (:class:`ReconNet`) that takes ``(y, physics)`` as deepinv's reconstructors do.
"""

from ..extras import require

require('recon')

from .network import DataStep, DataTerm, ReconNet  # noqa: E402
from .presets import PRESETS, admm_net_cs, fista_net, ista_net, ista_net_plus  # noqa: E402
from .prox import ISTANetPlusProx, ISTANetProx, SoftThreshold  # noqa: E402

__all__ = [
    'ReconNet',
    'DataStep',
    'DataTerm',
    'SoftThreshold',
    'ISTANetProx',
    'ISTANetPlusProx',
    'PRESETS',
    'ista_net',
    'ista_net_plus',
    'fista_net',
    'admm_net_cs',
]
