"""Reversible memory: a stage whose steps can be run backwards stores two iterates, not one per step.

A one-stream rule ``x[k+1] = alpha*T(x[k]) + beta*x[k] + gamma*x[k-1]`` (coefficients per step, learnable or fixed)
with no activation after the sum and ``gamma != 0`` gives ``x[k-1] = (x[k+1] - alpha*T(x[k]) - beta*x[k]) / gamma``.
Forward runs without a graph and keeps only the last two iterates; backward rebuilds each earlier iterate from the
two after it, re-runs that step's T with a graph, and takes its gradients: for the input, T's weights and the
coefficients. Activation memory is then flat in the number of steps (Momentum ResNets do this for one fixed rule;
here any such rule, with learnable coefficients). Reads before the stage's start give its input (``x[-1] = x[0]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from ..rules.ir import ONE, Iterate, Term, Transform
from ..rules.semantics import coefficient_value

if TYPE_CHECKING:
    from .plan import Plan
    from .stage import CompiledStage

Scale = Tensor | float
"""A coefficient: a learned tensor (scalar or per channel) or a folded number."""


class NotInvertible(ValueError):
    """The rule or the stage cannot run its steps backwards; the message says why."""


class InvertibleStep:
    """The analysis: which terms of the rule are ``T(x[k])``, ``x[k]`` and ``x[k-1]``."""

    def __init__(self, plan: Plan, activation: bool):
        rule = plan.rule
        if activation:
            raise NotInvertible(
                'an activation after the sum (a ReLU) is not invertible: build the stage without '
                'one (e.g. step_act=False)'
            )
        if len(rule.updates) != 1 or plan.dense:
            raise NotInvertible(
                f'reversible memory needs one stream and no history sums; {str(rule)!r} has '
                f'{"a sum over the history" if plan.dense else f"{len(rule.updates)} streams"}'
            )
        (update,) = rule.updates
        self.stream = update.stream
        self.transform, self.current, self.previous = [], [], []
        for term in update.terms:
            value = term.value
            if isinstance(value, Transform) and value.terms == (Term(ONE, Iterate(update.stream, 0)),):
                self.transform.append(term.coeff)
            elif isinstance(value, Iterate) and value.lag in (0, 1) and value.stream == update.stream:
                (self.current if value.lag == 0 else self.previous).append(term.coeff)
            else:
                raise NotInvertible(
                    f'the term {term} is not one of T(x[k]), x[k] and x[k-1]: a step is run '
                    'backwards from the two iterates after it'
                )
        if not self.previous:
            raise NotInvertible(f'{str(rule)!r} has no x[k-1] term, so x[k-1] cannot be rebuilt from x[k+1] and x[k]')

    def coefficients(self, lookup: Callable[[str, int | None], torch.Tensor | float]) -> tuple:
        """``(alpha, beta, gamma)`` of one step; ``lookup(name, j)`` gives a symbol's value there."""
        total = lambda coeffs: sum((coefficient_value(c, lookup) for c in coeffs), 0.0)  # noqa: E731
        return total(self.transform), total(self.current), total(self.previous)


def vanishes(gamma: torch.Tensor | float, tolerance: float = 1e-6) -> bool:
    """Whether the x[k-1] coefficient (a number or a tensor per channel) is too close to 0 to divide by."""
    return bool(torch.as_tensor(gamma).abs().min() < tolerance)


def _snapshot_norms(module: torch.nn.Module) -> list:
    """Running statistics of the BatchNorms in ``module``: a re-run in backward must not count a batch twice."""
    return [
        (m, [b.clone() for b in m.buffers()])
        for m in module.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]


def _restore_norms(snapshot: list):
    for m, saved in snapshot:
        for buffer, value in zip(m.buffers(), saved):
            buffer.copy_(value)


def _rng_state(device: torch.device) -> tuple:
    """The random states a step draws from (the CPU's, and the GPU's when it runs there): drop-path masks."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == 'cuda' else None


def _set_rng_state(device: torch.device, state: tuple):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


WIDER = {torch.float16: torch.float32, torch.bfloat16: torch.float32, torch.float32: torch.float64}


def _wide(value, dtype):
    """A coefficient (number or tensor) in the carried precision, without its graph."""
    return value.detach().to(dtype) if torch.is_tensor(value) else value


ANCHOR_EVERY = 32
"""Every this many steps the pair of iterates is kept: rebuilding runs at most this far from a stored pair.
Measured (benchmarks/memory.py, ``rebuild_error``): 32 steps rebuilt from float64 sums stay within about 1e-10 of
the forward's iterates, far below float32's rounding (6e-8); from about 50 on they reach it, then grow ~10x every
16 steps."""


def run_steps(
    stage: CompiledStage, x0: torch.Tensor, step_rng: list | None = None, anchors: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The steps without a graph; returns the last two iterates in the carried precision, one wider than the
    input's (float64 for float32): T runs in the input's dtype, but the sums are kept so exactly that dividing by
    gamma in backward, step after step, does not amplify rounding. Rounding still grows along the rebuilt steps
    (through T's Jacobian and 1/gamma), so ``anchors`` gets ``{k: (x[k], x[k-1])}`` every ``ANCHOR_EVERY`` steps:
    the error is that of at most ``ANCHOR_EVERY`` rebuilt steps at any depth (tests/test_reversible.py)."""
    transforms, wide = getattr(stage, f'T_{stage.invertible.stream}'), WIDER.get(x0.dtype, x0.dtype)
    x_prev = x = x0.to(wide)
    with torch.no_grad():
        for k in range(stage.steps):
            if step_rng is not None:
                step_rng.append(_rng_state(x0.device))
            if anchors is not None and k and k % ANCHOR_EVERY == 0:
                anchors[k] = (x, x_prev)

            def value(name: str, j: int | None, step: int = k):
                return stage._value(name, step, j)

            alpha, beta, gamma = (_wide(c, wide) for c in stage.invertible.coefficients(value))
            x_prev, x = x, combine(transforms[k](x.to(x0.dtype)).to(wide), x, x_prev, alpha, beta, gamma)
    return x, x_prev


class ReversibleSteps(torch.autograd.Function):
    """The steps of a reversible stage: ``apply(x0, stage, *parameters)``; saves the last two iterates, the anchor
    pairs and the random states of each step (so that a dropped path is dropped again when the step is re-run)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x0: torch.Tensor, stage: CompiledStage, *params: torch.Tensor) -> torch.Tensor:
        step_rng, anchors = [], {}
        x, x_prev = run_steps(stage, x0, step_rng, anchors)
        ctx.stage, ctx.step_rng, ctx.params, ctx.anchor_steps = stage, step_rng, params, list(anchors)
        ctx.save_for_backward(x, x_prev, *(i for pair in anchors.values() for i in pair))
        return x.to(x0.dtype)

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> tuple:
        stage, dtype = ctx.stage, grad_out.dtype
        x_next, x, *pairs = (saved.detach() for saved in ctx.saved_tensors)  # the output itself when already wide
        anchors = {k: pairs[2 * i : 2 * i + 2] for i, k in enumerate(ctx.anchor_steps)}
        grad_next, grad = grad_out, torch.zeros_like(grad_out)  # d/dx[k+1] (complete), d/dx[k] (partial)
        totals = {p: torch.zeros_like(p) for p in ctx.params if p.requires_grad}
        transforms = getattr(stage, f'T_{stage.invertible.stream}')
        device = grad_out.device
        for k in reversed(range(stage.steps)):
            T = transforms[k]
            if k in anchors:
                x = anchors[k][0]
            with torch.enable_grad(), torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []):
                _set_rng_state(device, ctx.step_rng[k])
                norms = _snapshot_norms(T)
                here = x.to(dtype).requires_grad_()
                t = T(here)
                coeffs = stage.invertible.coefficients(lambda name, j: stage._coefficient(name, k, j))  # noqa: B023
            alpha, beta, gamma = (_wide(c, dtype) for c in coeffs)
            if k in anchors:
                before = anchors[k][1]
            elif k:  # x[k-1] rebuilt from x[k+1] and x[k]; before the stage's start, a read gives its input
                wide_gamma = _wide(gamma, x.dtype)
                if vanishes(wide_gamma):
                    raise FloatingPointError(
                        f'step {k}: the x[k-1] coefficient is 0, so x[k-1] cannot be rebuilt '
                        '(reversible memory needs it away from 0)'
                    )
                before = rebuild(x_next, x, t.detach(), *(_wide(c, x.dtype) for c in coeffs))
            else:
                before = x
            # out = alpha*T(x[k]) + beta*x[k] + gamma*x[k-1]: T's vector-Jacobian product, the rest by hand
            weights = [p for p in T.parameters() if p in totals]
            d_here, *d_weights = torch.autograd.grad(t, [here, *weights], alpha * grad_next)
            _restore_norms(norms)  # after the graph is used: BatchNorm's backward checks its buffers' versions
            _accumulate(totals, weights, d_weights)
            learned = [(c, v) for c, v in zip(coeffs, (t, here, before)) if torch.is_tensor(c) and c.requires_grad]
            if learned:
                values = [c for c, _ in learned]
                owners = [p for p in stage.coeff.parameters() if p in totals]
                d_coeffs = [(grad_next * v.detach().to(dtype)).sum_to_size(c.shape) for c, v in learned]
                _accumulate(totals, owners, torch.autograd.grad(values, owners, d_coeffs, allow_unused=True))
            grad_next, grad = _add_scaled(d_here.add_(grad), beta, grad_next), gamma * grad_next
            x_next, x = x, before
        grad_in = grad_next + grad  # at k = 0, x[-1] is x[0]
        return (grad_in, None, *(totals.get(p) for p in ctx.params))


def combine(t: Tensor, x: Tensor, x_prev: Tensor, alpha: Scale, beta: Scale, gamma: Scale) -> Tensor:
    """``alpha*t + beta*x + gamma*x_prev`` (a step, ``t = T(x)``), in fused operations in ``t``'s storage."""
    return _add_scaled(_add_scaled(t.mul_(alpha), beta, x), gamma, x_prev)


def rebuild(x_next: Tensor, x: Tensor, t: Tensor, alpha: Scale, beta: Scale, gamma: Scale) -> Tensor:
    """``x_prev = (x_next - alpha*t - beta*x) / gamma``: the step run backwards, in ``x_next``'s precision (``t``
    is read in its own dtype, with no converted copy and no copy of ``x_next``)."""
    difference = (
        torch.add(x_next, t, alpha=-alpha) if not torch.is_tensor(alpha) else torch.addcmul(x_next, t, alpha, value=-1)
    )
    return _add_scaled(difference, -beta, x).div_(gamma)


def _add_scaled(total: torch.Tensor, coeff, tensor: torch.Tensor) -> torch.Tensor:
    """``total += coeff * tensor`` in place, in one fused operation (coeff a number or a broadcast tensor)."""
    return total.add_(tensor, alpha=coeff) if not torch.is_tensor(coeff) else total.addcmul_(tensor, coeff)


def _accumulate(totals: dict, params: list, grads):
    for p, g in zip(params, grads):
        if g is not None:
            totals[p] += g
