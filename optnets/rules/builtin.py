"""The built-in algorithms, each with its reading of T, a ``special`` and a ``theory`` initialisation.

``special`` makes the compiled network start as exactly the architecture it generalises (plain CNN, ResNet,
DenseNet, merge-and-run, Momentum ResNet); ``theory`` gives the algorithm's own coefficients under the rule's
reading of T (``READINGS``): a stage whose T is the algorithm's step map ``G`` (or its increment ``G - I``) then
reproduces the optimizer's iterates (tests/test_lemmas.py). An initial value is a number or a schedule
``(step, j) -> float`` where ``step`` counts the stage's steps from 0 and ``j`` is the history index of ``a[j]``.

Derivations, with ``x[-1] = x[0]`` (the history reset at a stage start):

- gradient descent ``z+ = G(z)``: ``x[k+1] = T(x[k])`` with T = G.
- heavy ball ``z+ = G(z) + beta (z - z_prev)``: with T = G - I, ``x[k+1] = T(x[k]) + (1+beta) x[k] - beta x[k-1]``
  (also Momentum ResNet's form); ResNet is beta = 0.
- Nesterov / FISTA ``y = x + beta_k (x - x_prev)``, ``x+ = G(y)``, ``beta_k = (t_{k-1} - 1)/t_k``, ``t_0 = 1``,
  ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2))/2``: with T = G, ``x[k+1] = T((1+beta_k) x[k] - beta_k x[k-1])``.
- the same in history form: for an affine G (a quadratic objective),
  ``G((1+beta_k) x[k] - beta_k x[k-1]) = (1+beta_k) G(x[k]) - beta_k G(x[k-1])``: a[k] = 1+beta_k, a[k-1] = -beta_k.
- linearised ADMM on ``min f(y) + f(x)`` s.t. ``y = x`` (scaled dual ``u``, step ``c = alpha*rho``, ``u_0 = 0``)::

      y+ = G(y) - c (y - x + u);   x+ = G(x) - c (x - y+ - u);   u+ = u + y+ - x+

  so ``u[k] = sum_t (y[t] - x[t])`` (a running sum) and, with T = G - I,
  ``y[k+1] = T(y[k]) + (1-c) y[k] + c x[k] - c u[k]``, ``x[k+1] = T(x[k]) + (1-c) x[k] + c y[k+1] + c u[k]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .rule import Rule

HEAVY_BALL_BETA = 0.9
MOMENTUM_GAMMA = 0.9  # Momentum ResNets' default (Sander et al., 2021)
ADMM_STEP = 0.5  # c = alpha * rho: the y and x steps are then averages, as merge-and-run's


@dataclass(frozen=True)
class Latest:
    """``value`` on the newest history entry (``j == step``), ``rest`` on the older ones."""

    value: float
    rest: float = 0.0

    def __call__(self, step: int, j: int | None) -> float:
        return self.value if j == step else self.rest

    def __str__(self) -> str:
        return f'{self.value:g} at j=k, {self.rest:g} before'


def nesterov_t(step: int) -> float:
    """FISTA's t_k: t_0 = 1, t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2."""
    t = 1.0
    for _ in range(step):
        t = (1 + math.sqrt(1 + 4 * t * t)) / 2
    return t


def nesterov_beta(step: int) -> float:
    """beta_k = (t_{k-1} - 1) / t_k, and beta_0 = 0 (there is no x[-1] to extrapolate from)."""
    return 0.0 if step == 0 else (nesterov_t(step - 1) - 1) / nesterov_t(step)


@dataclass(frozen=True)
class NesterovSchedule:
    """``scale * beta_k + offset``: b1 = 1 + beta_k and b2 = -beta_k of the extrapolation x + beta (x - x_prev)."""

    scale: float
    offset: float = 0.0

    def __call__(self, step: int, j: int | None) -> float:
        return self.offset + self.scale * nesterov_beta(step)

    def __str__(self) -> str:
        return f'{self.offset:g} {"+" if self.scale > 0 else "-"} beta_k'


@dataclass(frozen=True)
class NesterovHistory:
    """Nesterov in history form: a[k] = 1 + beta_k, a[k-1] = -beta_k and zero before."""

    def __call__(self, step: int, j: int | None) -> float:
        beta = nesterov_beta(step)
        return 1 + beta if j == step else -beta if j == step - 1 else 0.0

    def __str__(self) -> str:
        return '1+beta_k at j=k, -beta_k at j=k-1, 0 before'


gd = Rule.parse('x[k+1] = T(x[k])', name='gd', reading='step', special={}, theory={})

heavy_ball = Rule.parse(
    'x[k+1] = T(x[k]) + b1*x[k] + b2*x[k-1]',
    name='heavy_ball',
    reading='increment',
    special={'b1': 1.0, 'b2': 0.0},  # ResNet
    theory={'b1': 1 + HEAVY_BALL_BETA, 'b2': -HEAVY_BALL_BETA},
)

nesterov = Rule.parse(
    'x[k+1] = T(b1*x[k] + b2*x[k-1])',
    name='nesterov',
    reading='step',
    special={'b1': 1.0, 'b2': 0.0},  # plain CNN
    theory={'b1': NesterovSchedule(1.0, 1.0), 'b2': NesterovSchedule(-1.0)},
)

agd = Rule.parse(
    'x[k+1] = sum_j a[j]*T(x[j]) + sum_j b[j]*x[j]',
    name='agd',
    reading='step',
    special={'a': 1.0, 'b': 0.0},  # DenseNet
    theory={'a': NesterovHistory(), 'b': 0.0},
)

admm = Rule.parse(
    'y[k+1] = T(y[k]) + a1*y[k] + a2*x[k] - a3*sum_t (y[t] - x[t])\n'
    'x[k+1] = T(x[k]) + b1*x[k] + b2*y[k] + b3*y[k+1] + b4*sum_t (y[t] - x[t])',
    name='admm',
    reading='increment',
    # merge-and-run: both streams add the mean of the previous pair, no dual
    special={'a1': 0.5, 'a2': 0.5, 'a3': 0.0, 'b1': 0.5, 'b2': 0.5, 'b3': 0.0, 'b4': 0.0},
    theory={
        'a1': 1 - ADMM_STEP,
        'a2': ADMM_STEP,
        'a3': ADMM_STEP,
        'b1': 1 - ADMM_STEP,
        'b2': 0.0,
        'b3': ADMM_STEP,
        'b4': ADMM_STEP,
    },
)

momentum = Rule.parse(
    'x[k+1] = (1 - g)*T(x[k]) + (1 + g)*x[k] - g*x[k-1]',
    name='momentum',
    reading='increment',
    # v <- g v + (1-g) T(x), x <- x + v: heavy ball with beta = g and T scaled by 1-g (Momentum ResNet)
    special={'g': MOMENTUM_GAMMA},
    theory={'g': MOMENTUM_GAMMA},
)

linear_multistep = Rule.parse(
    'x[k+1] = T(x[k]) + (1 - c)*x[k] + c*x[k-1]',
    name='linear_multistep',
    reading='increment',
    # LM-ResNet (Lu et al., 2018); c = 0 is ResNet, and forward Euler, the one consistent choice with T's scale 1
    special={'c': 0.0},
    theory={'c': 0.0},
)

BUILTIN = {rule.name: rule for rule in (gd, heavy_ball, nesterov, agd, admm, momentum, linear_multistep)}
