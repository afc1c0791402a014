"""The papers' networks as rules and presets: ISTA-Net and ISTA-Net+ (Zhang and Ghanem, CVPR 2018: 9 phases,
32 features, 3x3 kernels), FISTA-Net (FISTA's extrapolation as its ``theory`` start) and ADMM-Net's structure
(Yang et al., NeurIPS 2016: a data step, the prox ``T``, the multiplier update; ``admm_net_cs``, not to clash with
the recognition family)."""

from __future__ import annotations

from ..rules import Rule
from ..rules.builtin import NesterovSchedule
from .network import ReconNet
from .prox import ISTANetPlusProx, ISTANetProx

ISTA = Rule.parse('x[k+1] = T(x[k] - a*G(x[k]))', name='ista', reading='prox', special={'a': 1.0}, theory={'a': 1.0})
"""ISTA: a gradient step on the data term (``a = 1`` is the step ``1/L``), then the prox ``T``."""
FISTA = Rule.parse(
    'x[k+1] = T(b1*x[k] + b2*x[k-1] - a*G(b1*x[k] + b2*x[k-1]))',
    name='fista',
    reading='prox',
    special={'a': 1.0, 'b1': NesterovSchedule(1.0, 1.0), 'b2': NesterovSchedule(-1.0)},
    theory={'a': 1.0, 'b1': NesterovSchedule(1.0, 1.0), 'b2': NesterovSchedule(-1.0)},
)
"""FISTA: ISTA's phase at the extrapolated point ``x[k] + beta_k (x[k] - x[k-1])``."""

ADMM = Rule.parse(
    'x[k+1] = z[k] - c*sum_t (x[t] - z[t]) - a*G(z[k] - c*sum_t (x[t] - z[t]))\n'
    'z[k+1] = T(z[k] - a*G(z[k] - c*sum_t (x[t] - z[t])))',
    name='admm_prox',
    reading='prox',
    special={'a': 1.0, 'c': 1.0},
    theory={'a': 1.0, 'c': 1.0},
)
"""ADMM on ``min 1/2 ||A x - y||^2 + g(z)`` s.t. ``x = z``, with the scaled dual ``u[k] = c*sum_t (x[t] - z[t])``
(``u_0 = 0``) inside the data term: ``x+ = v - a*G(v)`` at ``v = z - u`` (one gradient step on the x-subproblem,
``a = 1`` its step ``1/L``), ``z+ = T(x+ + u)``, the prox of ``g``, and ``u+ = u + x+ - z+`` (``c = 1``); the
output is the mean of ``x`` and ``z``."""

PRESETS = {  # name -> (rule, the prox, its phases)
    'ista_net': (ISTA, ISTANetProx, 9),
    'ista_net_plus': (ISTA, ISTANetPlusProx, 9),
    'fista_net': (FISTA, ISTANetPlusProx, 9),
    'admm_net_cs': (ADMM, ISTANetPlusProx, 9),
}


def build(name: str, phases: int | None = None, channels: int = 1, features: int = 32, **kwargs) -> ReconNet:
    """``PRESETS[name]`` with ``phases`` phases (the paper's when None); ``kwargs`` go to ``ReconNet``."""
    rule, prox, default_phases = PRESETS[name]
    return ReconNet(rule, phases or default_phases, lambda phase: prox(channels, features), channels=channels, **kwargs)


def ista_net(phases: int | None = None, **kwargs) -> ReconNet:
    """ISTA-Net: ``ISTA`` with ISTA-Net's prox."""
    return build('ista_net', phases, **kwargs)


def ista_net_plus(phases: int | None = None, **kwargs) -> ReconNet:
    """ISTA-Net+: ``ISTA`` with ISTA-Net+'s residual prox."""
    return build('ista_net_plus', phases, **kwargs)


def fista_net(phases: int | None = None, **kwargs) -> ReconNet:
    """FISTA-Net: ``FISTA``, ``b1, b2`` learned from FISTA's ``1 + beta_k, -beta_k``."""
    return build('fista_net', phases, **kwargs)


def admm_net_cs(phases: int | None = None, **kwargs) -> ReconNet:
    """ADMM-Net's phases: ``ADMM`` with ISTA-Net+'s prox as ``T``, its step ``a`` and dual weight ``c`` learned
    from ADMM's."""
    return build('admm_net_cs', phases, **kwargs)
