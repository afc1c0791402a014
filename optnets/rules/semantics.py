"""What a rule means: a direct evaluation of its IR, with no folding, fusion or history analysis.

This is the definition the compiler is tested against. A stage of ``steps`` steps starting from ``x0``:

- **History reset.** Every stream starts at the stage input: ``s[0] = x0`` for each stream ``s``.
- **A step.** For ``k = 0 .. steps-1`` the updates run in their order; each computes ``s[k+1] = act(sum of its
  terms)`` from the iterates ``0 .. k`` of every stream, and from ``t[k+1]`` of the streams ``t`` updated
  before it in this step (a Gauss-Seidel read, written ``t[k+1]``).
- **Reads.** ``s[k-lag]`` reads ``s[max(k - lag, 0)]``: a read before the stage start gives its input.
  ``T(sum c*s[k-lag])`` applies the step's transform of the updated stream, ``transform(k, stream, None)``.
  ``sum_j c(j)*s[j]`` sums ``j = 0 .. k``; ``sum_j c(j)*T(s[j])`` applies ``transform(k, stream, j)`` to each
  ``s[j]`` (a dense layer's T has one weight slice per history entry) and then ``tail(k, stream)`` to the sum.
  ``G(...)`` applies the data term's gradient, ``gradient``, the same at every step, to its combination (iterates
  and plain sums, read as above).
- **Coefficients.** ``coefficient(name, k, j)`` gives a symbol's value at step ``k`` (``j`` is the history entry
  of an indexed symbol ``a[j]``, else None); arithmetic is evaluated as written.
- **Dense stages whose input has another width** (``skip_input=True``) leave ``s[0]`` out of the plain sums
  ``sum_j c(j)*s[j]``; a plain read of ``s[0]`` is an error.
- **The stage output** is the mean of the streams' last iterates, or, for a rule that sums transforms over
  the history (a dense stage), the concatenation of its one stream's history (``output``).

Values only need ``+`` and ``*``: numbers, tensors, anything that adds.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

from .ir import OPERATORS, BinOp, Coeff, DataGradient, HistorySum, Iterate, Num, Sym, Term, Transform
from .rule import Rule


def coefficient_value(expr: Coeff, lookup: Callable[[str, int | None], Any], j: int | None = None) -> Any:
    """The value of a coefficient expression, with ``lookup(name, j)`` for its symbols."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Sym):
        return lookup(expr.name, j if expr.index is not None else None)
    assert isinstance(expr, BinOp)
    return OPERATORS[expr.op](coefficient_value(expr.left, lookup, j), coefficient_value(expr.right, lookup, j))


def evaluate(
    rule: Rule,
    x0: Any,
    steps: int,
    transform: Callable,
    coefficient: Callable,
    activation: Callable | None = None,
    tail: Callable | None = None,
    skip_input: bool = False,
    gradient: Callable | None = None,
) -> dict[str, list]:
    """Every stream's iterates ``[s[0], ..., s[steps]]`` (see the module docstring for the meaning).

    ``transform(k, stream, j)`` -> T; ``coefficient(name, k, j)`` -> value; ``activation(v)`` after each step;
    ``tail(k, stream)`` -> the map applied after a sum of transforms (identity if None); ``gradient(v)`` -> the
    data term's gradient at ``v`` (a rule with ``G(...)`` needs it)."""
    history = {stream: [x0] for stream in rule.streams}
    for k in range(steps):
        lookup = lambda name, j: coefficient(name, k, j)  # noqa: E731,B023

        def total(terms: tuple[Term, ...], owner: str):
            parts = [part for term in terms for part in contribution(term, owner)]
            return functools.reduce(operator.add, parts) if parts else 0 * x0

        def contribution(term: Term, owner: str) -> list:
            value = term.value
            if isinstance(value, Iterate):
                if value.lag < 0:
                    return [coefficient_value(term.coeff, lookup) * new[value.stream]]
                index = max(k - value.lag, 0)
                if skip_input and index == 0:
                    raise ValueError(f'{value} reads the stage input x[0], whose width differs from the steps')
                return [coefficient_value(term.coeff, lookup) * history[value.stream][index]]
            if isinstance(value, Transform):
                return [coefficient_value(term.coeff, lookup) * transform(k, owner, None)(total(value.terms, owner))]
            if isinstance(value, DataGradient):
                if gradient is None:
                    raise ValueError(f'{value} reads a data term: evaluate the rule with gradient=...')
                return [coefficient_value(term.coeff, lookup) * gradient(total(value.terms, owner))]
            assert isinstance(value, HistorySum)
            entries = history[value.stream]
            if not value.transformed:
                first = 1 if skip_input else 0
                return [coefficient_value(term.coeff, lookup, j) * entries[j] for j in range(first, k + 1)]
            summed = functools.reduce(
                operator.add,
                [coefficient_value(term.coeff, lookup, j) * transform(k, owner, j)(entries[j]) for j in range(k + 1)],
            )
            return [tail(k, owner)(summed) if tail else summed]

        new = {}  # this step's new iterates, in assignment order
        for update in rule.updates:
            value = total(update.terms, update.stream)
            new[update.stream] = activation(value) if activation else value
        for stream, value in new.items():
            history[stream].append(value)
    return history


def output(rule: Rule, history: dict[str, list], concat: Callable | None = None) -> Any:
    """The stage output: the mean of the streams' last iterates, or ``concat`` of a dense stage's history."""
    if any(
        isinstance(term.value, HistorySum) and term.value.transformed
        for update in rule.updates
        for term in update.terms
    ):
        (stream,) = rule.streams
        return concat(history[stream])
    last = [history[stream][-1] for stream in rule.streams]
    value = functools.reduce(operator.add, last)
    return value * (1 / len(last)) if len(last) > 1 else value
