"""Why ``x[k+1] = T(x[k])`` is gradient descent: a layer ``x[k+1] = phi(W x[k])`` with ``W = U^2`` (``U``
symmetric) is gradient descent with step 1 on ``f(z) = 1/2 ||z||^2 - 1'Phi(U z)`` in ``z = U x``, where ``Phi`` is
the antiderivative of the activation ``phi`` (``Phi(0) = 0``):

    z - grad f(z) = U phi(U z),   so   z[k+1] = z[k] - grad f(z[k])   is   x[k+1] = phi(U^2 x[k]).

The gradient of ``1'Phi(U z)`` is ``U phi(U z)`` because ``U`` is symmetric. ``ANTIDERIVATIVES`` holds ``Phi`` for
the activations of the method's table: sigmoid, tanh, softplus, softsign, ReLU, leaky ReLU, ELU and swish (leaky
ReLU and ELU with their parameter, ``alpha``); softplus's and swish's need the dilogarithm ``Li2``, evaluated by
its Bernoulli series."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

# Li2(x) = sum_n B_n u^(n+1) / (n+1)!, u = -log(1 - x): B_n / (n+1)! for n = 0, 1, 2, 4, ..., 20 (odd n > 1: 0)
_BERNOULLI = [
    (0, 1.0),
    (1, -0.5),
    (2, 1 / 6),
    (4, -1 / 30),
    (6, 1 / 42),
    (8, -1 / 30),
    (10, 5 / 66),
    (12, -691 / 2730),
    (14, 7 / 6),
    (16, -3617 / 510),
    (18, 43867 / 798),
    (20, -174611 / 330),
]


def _li2_series(u: torch.Tensor) -> torch.Tensor:
    """``Li2(1 - e^-u)`` for ``|u| <= log 2``, to float64 precision."""
    return sum(b / math.factorial(n + 1) * u ** (n + 1) for n, b in _BERNOULLI)


def li2_of_minus_exp(t: torch.Tensor) -> torch.Tensor:
    """``Li2(-e^t)``: the series for ``t <= 0`` (``-e^t`` in [-1, 0)), and for ``t > 0`` the inversion
    ``Li2(-e^t) = -pi^2/6 - t^2/2 - Li2(-e^-t)``; both branches are finite everywhere, so autograd is too."""
    inside = _li2_series(-F.softplus(t))
    inverted = -(math.pi**2) / 6 - t**2 / 2 - _li2_series(-F.softplus(-t))
    return torch.where(t <= 0, inside, inverted)


def _leaky(alpha: float = 0.01) -> Callable:
    return lambda t: torch.where(t >= 0, t, alpha * t) * t / 2


def _elu(alpha: float = 1.0) -> Callable:
    return lambda t: torch.where(t >= 0, t**2 / 2, alpha * (torch.expm1(torch.clamp(t, max=0)) - t))


ANTIDERIVATIVES: dict[str, Callable] = {
    'sigmoid': lambda t: F.softplus(t) - math.log(2),
    'tanh': lambda t: t.abs() + F.softplus(-2 * t.abs()) - math.log(2),  # log cosh t, stably
    'softplus': lambda t: -li2_of_minus_exp(t) - math.pi**2 / 12,
    'softsign': lambda t: t.abs() - torch.log1p(t.abs()),
    'relu': lambda t: F.relu(t) ** 2 / 2,
    'leaky_relu': _leaky(),
    'elu': _elu(),
    'swish': lambda t: t * F.softplus(t) + li2_of_minus_exp(t) + math.pi**2 / 12,
}
"""``Phi`` with ``Phi' = phi`` and ``Phi(0) = 0``, by activation name (leaky ReLU with slope 0.01, ELU with 1)."""

PARAMETRISED: dict[str, Callable[[float], Callable]] = {'leaky_relu': _leaky, 'elu': _elu}
"""``alpha -> Phi`` for the activations with a parameter: leaky ReLU's negative slope, ELU's scale."""


def layer_objective(
    activation: str, U: torch.Tensor, alpha: float | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(z) = 1/2 ||z||^2 - 1'Phi(U z)``, whose gradient step ``z - grad f(z)`` is ``U phi(U z)``: the layer
    ``phi(U^2 x)`` in ``z = U x``. ``z`` holds one vector per row; ``f`` sums over rows. ``U`` must be symmetric.
    ``alpha`` is the parameter of leaky ReLU (its negative slope) or ELU (its scale); the defaults are torch's."""
    if activation not in ANTIDERIVATIVES:
        raise ValueError(f'no antiderivative for {activation!r}: one of {", ".join(ANTIDERIVATIVES)}')
    if alpha is not None and activation not in PARAMETRISED:
        raise ValueError(f'{activation} has no parameter: alpha is for {" and ".join(PARAMETRISED)}')
    if U.dim() != 2 or U.shape[0] != U.shape[1] or not torch.allclose(U, U.T):
        raise ValueError('U must be a symmetric matrix (W = U^2 is then symmetric)')
    antiderivative = ANTIDERIVATIVES[activation] if alpha is None else PARAMETRISED[activation](alpha)
    return lambda z: (z**2).sum() / 2 - antiderivative(z @ U).sum()  # rows: (U z)^T = z^T U, U symmetric
