"""Reconstruction networks: unrolled algorithms over deepinv's physics, from the same compiler as the zoo.

The problem is ``min_x 1/2 ||A x - y||^2 + g(x)``. A rule writes the data term's gradient as ``G(...)`` (ISTA is
``x[k+1] = T(x[k] - a*G(x[k]))``, ``ISTA``) and its ``T`` is a learned proximal map; in a rule without ``G``,
``T`` is a whole phase, a gradient step then the prox (``DataStep``), read as the rule says. Any rule the
language takes is an unrolled reconstruction network (``ReconNet``) that takes ``(y, physics)`` as
deepinv's reconstructors do.
"""

from ..extras import require

require('recon')

from .network import DataStep, DataTerm, ReconNet  # noqa: E402
from .presets import ADMM, FISTA, ISTA, PRESETS, admm_net_cs, fista_net, ista_net, ista_net_plus  # noqa: E402
from .prox import ISTANetPlusProx, ISTANetProx, SoftThreshold  # noqa: E402

__all__ = [
    'ReconNet',
    'DataStep',
    'DataTerm',
    'SoftThreshold',
    'ISTANetProx',
    'ISTANetPlusProx',
    'ISTA',
    'FISTA',
    'ADMM',
    'PRESETS',
    'ista_net',
    'ista_net_plus',
    'fista_net',
    'admm_net_cs',
]
