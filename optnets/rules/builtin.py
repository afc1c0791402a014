"""The built-in algorithms, each with a ``special`` and a ``theory`` initialisation.

``special`` makes the compiled network start as exactly the architecture it generalises (plain CNN, ResNet,
DenseNet, merge-and-run); ``theory`` uses the coefficients the algorithm itself prescribes. An initial value is a
number or a schedule ``(step, j) -> float`` where ``step`` counts the stage's steps from 0 and ``j`` is the history
index of an indexed coefficient ``a[j]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .ir import Rule

HEAVY_BALL_BETA = 0.9


@dataclass(frozen=True)
class Latest:
    """``value`` on the newest history entry (``j == step``), ``rest`` on the older ones."""
    value: float
    rest: float = 0.0

    def __call__(self, step: int, j: int | None) -> float:
        return self.value if j == step else self.rest

    def __str__(self) -> str:
        return f'{self.value:g} at j=k, {self.rest:g} before'


def nesterov_theta(step: int) -> float:
    """theta_k of Nesterov's method: theta_0 = 1, theta_{k+1}^2 = (1 - theta_{k+1}) theta_k^2."""
    theta = 1.0
    for _ in range(step):
        theta = (math.sqrt(theta ** 4 + 4 * theta ** 2) - theta ** 2) / 2
    return theta


def nesterov_beta(step: int) -> float:
    """beta_k = theta_k (1 - theta_{k-1}) / theta_{k-1}, with theta_{-1} = 1 so that beta_0 = 0."""
    if step == 0:
        return 0.0
    previous = nesterov_theta(step - 1)
    return nesterov_theta(step) * (1 - previous) / previous


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
    """Nesterov in history form: linearising T(y_k), y_k = (1+beta_k) x_k - beta_k x_{k-1}, gives
    a[k] = 1 + beta_k, a[k-1] = -beta_k and zero before."""

    def __call__(self, step: int, j: int | None) -> float:
        beta = nesterov_beta(step)
        return 1 + beta if j == step else -beta if j == step - 1 else 0.0

    def __str__(self) -> str:
        return '1+beta_k at j=k, -beta_k at j=k-1, 0 before'


gd = Rule.parse('x[k+1] = T(x[k])', name='gd', special={}, theory={})

heavy_ball = Rule.parse(
    'x[k+1] = T(x[k]) + b1*x[k] + b2*x[k-1]', name='heavy_ball',
    special={'b1': 1.0, 'b2': 0.0},  # ResNet
    theory={'b1': HEAVY_BALL_BETA, 'b2': -HEAVY_BALL_BETA},  # Phi(W x[k]) + beta (x[k] - x[k-1])
)

nesterov = Rule.parse(
    'x[k+1] = T(b1*x[k] + b2*x[k-1])', name='nesterov',
    special={'b1': 1.0, 'b2': 0.0},  # plain CNN
    theory={'b1': NesterovSchedule(1.0, 1.0), 'b2': NesterovSchedule(-1.0)},
)

agd = Rule.parse(
    'x[k+1] = sum_j a[j]*T(x[j]) + sum_j b[j]*x[j]', name='agd',
    special={'a': 1.0, 'b': 0.0},  # DenseNet
    theory={'a': NesterovHistory(), 'b': 0.0},
)

admm = Rule.parse(
    'y[k+1] = T(y[k]) + sum_t a[t]*y[t] + sum_t b[t]*x[t]\n'
    'x[k+1] = T(x[k]) + sum_t a[t]*y[t] + sum_t b[t]*x[t]', name='admm',
    special={'a': Latest(0.5), 'b': Latest(0.5)},  # merge-and-run: both streams add the mean of the latest pair
    # with the scaled dual u_0 = 0, linearised ADMM's first correction is the same averaging of the two streams
    theory={'a': Latest(0.5), 'b': Latest(0.5)},
)

BUILTIN = {rule.name: rule for rule in (gd, heavy_ball, nesterov, agd, admm)}
