"""The papers' networks as rules and presets: ISTA-Net and ISTA-Net+ (Zhang and Ghanem, CVPR 2018: 9 phases,
32 features, 3x3 kernels), FISTA-Net (Nesterov's rule with FISTA's extrapolation as its ``theory`` start) and an
ADMM network (the zoo's dual-stream ADMM rule; ``admm_net_cs``, not to clash with the recognition family)."""

from __future__ import annotations

from .. import rules
from .network import ReconNet
from .prox import ISTANetPlusProx, ISTANetProx

PRESETS = {  # name -> (rule, the prox, its phases)
    'ista_net': (rules.gd, ISTANetProx, 9),
    'ista_net_plus': (rules.gd, ISTANetPlusProx, 9),
    'fista_net': (rules.nesterov, ISTANetPlusProx, 9),
    'admm_net_cs': (rules.admm, ISTANetPlusProx, 9),
}


def build(name: str, phases: int | None = None, channels: int = 1, features: int = 32, **kwargs) -> ReconNet:
    """``PRESETS[name]`` with ``phases`` phases (the paper's when None); ``kwargs`` go to :class:`ReconNet`."""
    rule, prox, default_phases = PRESETS[name]
    return ReconNet(rule, phases or default_phases, lambda phase: prox(channels, features), channels=channels, **kwargs)


def ista_net(phases: int | None = None, **kwargs) -> ReconNet:
    """ISTA-Net: ISTA (gradient descent's rule, ``x[k+1] = T(x[k])``) with ISTA-Net's prox."""
    return build('ista_net', phases, **kwargs)


def ista_net_plus(phases: int | None = None, **kwargs) -> ReconNet:
    """ISTA-Net+: ISTA with ISTA-Net+'s residual prox."""
    return build('ista_net_plus', phases, **kwargs)


def fista_net(phases: int | None = None, **kwargs) -> ReconNet:
    """FISTA-Net: ``x[k+1] = T(b1*x[k] + b2*x[k-1])``, ``b1, b2`` learned from FISTA's ``1 + beta_k, -beta_k``."""
    return build('fista_net', phases, **kwargs)


def admm_net_cs(phases: int | None = None, **kwargs) -> ReconNet:
    """ADMM's dual-stream rule (linearised ADMM on a consensus split, the rule's ``theory``) with T the increment
    of a proximal gradient phase."""
    return build('admm_net_cs', phases, **kwargs)
