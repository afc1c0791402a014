"""A rule unrolled over deepinv's physics: ``G(...)`` reads the measurements, ``T`` is the learned prox (or, in a
rule without ``G``, a whole proximal gradient phase)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from deepinv.models import Reconstructor
from deepinv.physics import Physics
from torch import nn

from ..compiler import CompiledStage, compile_rule
from ..rules import Rule
from ..rules.ir import DataGradient, symbols
from ..rules.rule import walk_terms


@torch.no_grad()
def squared_norm(physics: Physics, like: torch.Tensor, iters: int = 200) -> float:
    """``||A^T A||_2`` by the power method from a seeded start, so that a network's outputs are a function of its
    state and its physics alone (deepinv's ``compute_sqnorm`` starts from the global generator)."""
    x = torch.randn(like.shape, generator=torch.Generator().manual_seed(0)).to(like)
    value = 0.0
    for _ in range(iters):
        x = physics.A_adjoint(physics.A(x / x.norm()))
        value = float(x.norm())
    return value


_NORMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # physics -> ||A^T A||, measured once each


def lipschitz(physics: Physics, like: torch.Tensor) -> float:
    """``L = ||A^T A||`` of ``physics`` (``squared_norm``), measured once per physics object."""
    if physics not in _NORMS:
        _NORMS[physics] = squared_norm(physics, like[:1])
    return _NORMS[physics]


@dataclass(frozen=True, eq=False)  # compared by identity: its fields are tensors and a physics
class DataTerm:
    """The data of one reconstruction: measurements ``y``, their ``physics`` and ``L``, the Lipschitz constant of
    the data term's gradient. ``ReconNet.forward`` makes one per call and passes it to its stage as an argument."""

    y: torch.Tensor
    physics: Physics
    lipschitz: float

    def gradient(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z) = (1/L) A^T (A z - y)``: the gradient of ``1/2 ||A z - y||^2`` over its Lipschitz constant, so that
        ``z - G(z)`` is ISTA's gradient step (what a rule's ``G(...)`` reads)."""
        return self.physics.A_adjoint(self.physics.A(z) - self.y) / self.lipschitz

    def gradient_step(self, z: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """``z - step * G(z)``: a gradient step on the data term, ``step`` 1 being ISTA's ``1/L``."""
        return z - step * self.gradient(z)


class DataStep(nn.Module):
    """One phase: ``G(z) = P(z - (a/L) A^T(A z - y))``, a gradient step on the data term with a learned step size
    ``a`` (one per phase; 1 is ISTA's ``1/L``) and a learned proximal map ``P``. As ``T`` it is ``G``
    (``reading='step'``) or ``G(z) - z`` (``reading='increment'``), so that a rule's ``theory`` coefficients give
    the algorithm's own iterates. It reads the data it is called with: ``step(z, data)``."""

    def __init__(
        self, prox: nn.Module, step_size: float = 1.0, increment: bool = False, dtype: torch.dtype | None = None
    ):
        super().__init__()
        self.prox, self.increment = prox, increment
        self.step_size = nn.Parameter(torch.tensor(float(step_size), dtype=dtype))

    def forward(self, z: torch.Tensor, data: DataTerm) -> torch.Tensor:
        g = self.prox(data.gradient_step(z, self.step_size))
        return g - z if self.increment else g


def adjoint_of_measurements(y: torch.Tensor, physics: Physics) -> torch.Tensor:
    """``A^T y``, after checking what a reconstruction is given: a deepinv physics, finite measurements (in eager
    mode: an exported or compiled graph cannot branch on values), and measurements of the shape ``physics`` makes
    (each refused in one ``ValueError`` that says which)."""
    if not isinstance(physics, Physics):
        raise ValueError(f'physics must be a deepinv Physics, not {type(physics).__name__}: forward(y, physics)')
    if not isinstance(y, torch.Tensor):
        raise ValueError(f'the measurements y must be a tensor, not {type(y).__name__}')
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(y).all()):  # a value: not in a traced graph
        raise ValueError('the measurements y hold NaN or inf: a reconstruction from them would be non-finite too')
    try:
        x0 = physics.A_adjoint(y)
        fits = physics.A(x0).shape == y.shape
    except RuntimeError as error:
        fits, cause = False, f' ({str(error).strip().splitlines()[0]})'
    else:
        cause = f' (A(A^T y) has shape {tuple(physics.A(x0).shape)})' if not fits else ''
    if not fits:
        raise ValueError(f'measurements of shape {tuple(y.shape)} do not fit the physics{cause}')
    return x0


class ReconNet(Reconstructor):
    """``rule`` unrolled for ``phases`` phases; ``forward(y, physics)`` starts from ``A^T y`` (deepinv's
    reconstructor interface, so deepinv's ``Trainer`` and ``test`` run it).

    A rule that writes the data term, ``x[k+1] = T(x[k] - a*G(x[k]))``, gets ``prox(phase)`` as its ``T`` and the
    measurements as its ``G``; any other rule gets a ``DataStep`` (a gradient step, then ``prox(phase)``) as
    its ``T``, read as the rule says. ``coeff_init='theory'`` starts from the algorithm's coefficients (ISTA's
    step ``a = 1``, FISTA's extrapolation), learned when ``learn_coeffs``. A dense rule (a concatenated history)
    gives no single image and is refused. ``dtype`` casts the whole network (its coefficients included)."""

    def __init__(
        self,
        rule: Rule | str,
        phases: int,
        prox: Callable[[int], nn.Module],
        channels: int = 1,
        step_size: float = 1.0,
        coeff_init: str = 'theory',
        learn_coeffs: bool = True,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        plan = compile_rule(rule)
        if plan.dense:
            raise ValueError(f'{plan.rule}: a dense rule concatenates its history; a reconstruction needs one image')
        reads_data = any(isinstance(term.value, DataGradient) for term in walk_terms(plan.rule))
        increment = plan.rule.reading == 'increment'
        self.stage = CompiledStage(
            plan,
            phases,
            lambda phase, stream, widths: (
                prox(phase) if reads_data else DataStep(prox(phase), step_size, increment, dtype)
            ),
            channels,
            coeff_init=coeff_init,
            learn_coeffs=learn_coeffs,
            transforms_read_data=not reads_data,  # a DataStep takes the data beside its input
            dtype=dtype,  # the coefficients made in it, not rounded to float32 first (FISTA's to 1e-12)
        )
        if dtype is not None:  # the proxes, as ``prox(phase)`` made them
            self.to(dtype)

    def forward(self, y: torch.Tensor, physics: Physics, **kwargs) -> torch.Tensor:
        x0 = adjoint_of_measurements(y, physics)
        return self.stage(x0, DataTerm(y, physics, lipschitz(physics, x0)))

    def step_sizes(self) -> list[nn.Parameter]:
        """The learned step sizes, each in units of ISTA's ``1/L``: the coefficients of the rule's ``G(...)`` terms,
        or each ``DataStep``'s. Adam moves a parameter by about its learning rate whatever its scale, so learning
        them at ``L`` times the others' rate learns the raw step ``a/L`` at that rate, as deepinv's unfolded
        networks do (``optnets train``'s reconstruction recipe does so by default)."""
        names = {
            symbol.name
            for term in walk_terms(self.stage.plan.rule)
            if isinstance(term.value, DataGradient)
            for symbol in symbols(term.coeff)
        }
        steps = [p for name, p in self.stage.coeff.named_parameters() if name in names]
        return steps + [t.step_size for t in self.transforms() if isinstance(t, DataStep)]

    def raw_step_groups(self, lr: float, lipschitz: float) -> list[dict]:
        """An optimizer's parameter groups: every parameter at ``lr``, the step sizes at ``lipschitz * lr`` (under
        Adam, the raw steps at ``lr``; see ``step_sizes``)."""
        steps = self.step_sizes()
        others = [p for p in self.parameters() if all(p is not s for s in steps)]
        return [dict(params=others, lr=lr), dict(params=steps, lr=lr * lipschitz)]

    def transforms(self) -> list[nn.Module]:
        """Every phase's ``T`` (a ``DataStep``, or the prox of a rule that writes ``G``), stream by stream."""
        return list(self.stage.transforms())
