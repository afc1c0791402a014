"""Activations for LPOM: phi, its Lipschitz constant, and (where closed forms exist) f and g of the objective,

    f(x) = int_0^x (phi^-1(y) - y) dy,    g(x) = int_0^x (phi(y) - y) dy.

The solver only ever evaluates phi; f and g serve ``LPOM.objective`` and the tests.
"""

import functools
import inspect
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Activation:
    name: str
    phi: Fn
    lipschitz: float
    module: Callable[[], nn.Module]
    f: Optional[Fn] = None
    g: Optional[Fn] = None


def _quadratic_below(x, slope):
    """(slope - 1) x^2 / 2 for x < 0, else 0: the f or g of a piecewise linear activation."""
    return (slope - 1) * torch.clamp(x, max=0) ** 2 / 2


def relu() -> Activation:
    inf = lambda x: torch.where(x < 0, torch.inf, 0.0)  # noqa: E731  (phi^-1 is defined on x >= 0 only)
    return Activation('relu', torch.relu, 1.0, nn.ReLU, f=inf, g=lambda x: _quadratic_below(x, 0.0))


def leaky_relu(alpha: float = 0.01) -> Activation:
    return Activation(
        'leaky_relu',
        lambda x: F.leaky_relu(x, alpha),
        max(1.0, alpha),
        lambda: nn.LeakyReLU(alpha),
        f=lambda x: _quadratic_below(x, 1 / alpha),
        g=lambda x: _quadratic_below(x, alpha),
    )


def sigmoid() -> Activation:
    def f(x):
        return torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x) - x**2 / 2

    def g(x):
        return F.softplus(x) - torch.log(torch.tensor(2.0, dtype=x.dtype)) - x**2 / 2

    return Activation('sigmoid', torch.sigmoid, 0.25, nn.Sigmoid, f=f, g=g)


def tanh() -> Activation:
    def f(x):
        return x * torch.atanh(x) + torch.log1p(-(x**2)) / 2 - x**2 / 2

    def g(x):  # log cosh x, stably
        return x.abs() + F.softplus(-2 * x.abs()) - torch.log(torch.tensor(2.0, dtype=x.dtype)) - x**2 / 2

    return Activation('tanh', torch.tanh, 1.0, nn.Tanh, f=f, g=g)


def elu(alpha: float = 1.0) -> Activation:
    def f(x):
        below = torch.clamp(x, max=0)
        return torch.where(x < -alpha, torch.inf, (alpha + below) * torch.log1p(below / alpha) - below - below**2 / 2)

    def g(x):
        below = torch.clamp(x, max=0)
        return alpha * torch.expm1(below) - alpha * below - below**2 / 2

    return Activation('elu', lambda x: F.elu(x, alpha), max(1.0, alpha), lambda: nn.ELU(alpha), f=f, g=g)


def softplus() -> Activation:
    return Activation('softplus', F.softplus, 1.0, nn.Softplus)


def hardtanh() -> Activation:
    def f(x):
        return torch.where(x.abs() > 1, torch.inf, 0.0)

    def g(x):
        return -(torch.clamp(x.abs() - 1, min=0) ** 2) / 2

    return Activation('hardtanh', F.hardtanh, 1.0, nn.Hardtanh, f=f, g=g)


def identity() -> Activation:
    zero = torch.zeros_like
    return Activation('identity', lambda x: x, 1.0, nn.Identity, f=zero, g=zero)


ACTIVATIONS = {a.__name__: a for a in (relu, leaky_relu, sigmoid, tanh, elu, softplus, hardtanh, identity)}
NOT_MONOTONE = {'swish', 'silu', 'gelu', 'mish', 'sin', 'cos'}


class _Callable(nn.Module):
    def __init__(self, fn: Fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def from_callable(fn: Fn, name: str = 'custom') -> Activation:
    """Any non-decreasing Lipschitz function; both properties are checked on a grid and the constant estimated."""
    grid = torch.linspace(-20, 20, 40001, dtype=torch.float64)
    values = fn(grid)
    if not isinstance(values, torch.Tensor) or values.shape != grid.shape:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else ''
        raise ValueError(
            f'activation {name!r} must map a tensor to a tensor of its shape, elementwise; it returned '
            f'{type(values).__name__}{shape}'
        )
    slopes = torch.diff(values) / torch.diff(grid)
    if not torch.isfinite(values).all() or slopes.min() < -1e-9:
        worst = grid[int(slopes.argmin())].item()
        raise ValueError(
            f'activation {name!r} is not non-decreasing (it falls near x={worst:.3g}): LPOM needs '
            'a non-decreasing activation such as relu, sigmoid, tanh or leaky_relu'
        )
    return Activation(name, fn, float(slopes.max()), lambda: _Callable(fn))


@functools.lru_cache(maxsize=64)
def _from_callable_once(fn: Fn) -> Activation:
    """``from_callable`` once per callable: its Lipschitz estimate is a grid search, and estimators ask for
    their activations at every forward."""
    return from_callable(fn, getattr(fn, '__name__', 'custom'))


def get_activation(spec: str | Activation | Callable[[torch.Tensor], torch.Tensor], **kwargs) -> Activation:
    """``'relu'``, ``'leaky_relu'`` (with ``alpha``), ..., an ``Activation``, or a callable."""
    if isinstance(spec, Activation):
        return spec
    if callable(spec):
        try:
            return _from_callable_once(spec)
        except TypeError:  # unhashable: estimated each time
            return from_callable(spec, getattr(spec, '__name__', 'custom'))
    if spec in NOT_MONOTONE:
        raise ValueError(
            f'activation {spec!r} is not non-decreasing, so the LPOM objective is not convex in each '
            f'block: use one of {", ".join(ACTIVATIONS)}'
        )
    if spec not in ACTIVATIONS:
        raise ValueError(f'unknown activation {spec!r}: use one of {", ".join(ACTIVATIONS)} or a callable')
    parameters = inspect.signature(ACTIVATIONS[spec]).parameters
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        raise ValueError(f'activation {spec!r} takes {sorted(parameters) or "no arguments"}, not {unknown}')
    return ACTIVATIONS[spec](**kwargs)
