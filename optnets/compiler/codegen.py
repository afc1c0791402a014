"""Plan -> Python source of a stage's ``forward``, unrolled over its steps.

Generating code, as torch.fx does, keeps the executed program free of interpretation overhead, makes it
readable (``stage.code``) and lets TorchScript and FX see plain tensor code. Coefficients that are fixed
become number literals, so fixed special values fold away: ``1*T(x) + 1*x + 0*x_prev`` is emitted as ``T(x) + x``.
"""

from __future__ import annotations

import builtins
import itertools
import keyword
import linecache
import math
from dataclasses import dataclass, replace
from typing import Callable, Union

from ..rules.ir import (
    OPERATORS,
    BinOp,
    Coeff,
    DataGradient,
    HistorySum,
    Iterate,
    Num,
    Sym,
    Term,
    Transform,
    symbols,
)
from .plan import Plan, StreamPlan

Code = Union[float, str]  # a folded constant, or Python source of a tensor expression


def is_number(code: str | float, value: float) -> bool:
    """Whether ``code`` is the folded constant ``value`` (source text and tensors never are)."""
    return isinstance(code, float) and code == value


def fold(op: str, left: str | float, right: str | float) -> str | float:
    """``left op right`` with constants folded: two numbers (or two values) compute; ``x*0`` and ``0*x`` are 0;
    ``x*1``, ``1*x``, ``x/1``, ``x+0``, ``0+x`` and ``x-0`` are ``x``; anything else is source text."""
    if not isinstance(left, str) and not isinstance(right, str):
        if op == '/' and is_number(right, 0.0):
            raise ZeroDivisionError
        return OPERATORS[op](left, right)
    if op == '*' and (is_number(left, 0.0) or is_number(right, 0.0)):
        return 0.0
    if (op == '*' and is_number(left, 1.0)) or (op == '+' and is_number(left, 0.0)):
        return right
    if (op in '*/' and is_number(right, 1.0)) or (op in '+-' and is_number(right, 0.0)):
        return left
    if op == '/' and is_number(right, 0.0):
        raise ZeroDivisionError
    return f'({_literal(left)} {op} {_literal(right)})'


def emit_coeff(expr: Coeff, resolve: Callable[[str, int | None], Code], j: int | None) -> Code:
    """Source of a coefficient expression, with constants folded by ``fold``.

    When ``resolve`` gives values (numbers or tensors) instead of source, this evaluates the expression.
    A fixed coefficient of zero that divides raises a ``ValueError`` naming the expression."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Sym):
        return resolve(expr.name, j if expr.index is not None else None)
    assert isinstance(expr, BinOp)
    left, right = emit_coeff(expr.left, resolve, j), emit_coeff(expr.right, resolve, j)
    try:
        return fold(expr.op, left, right)
    except ZeroDivisionError:
        raise ValueError(
            f'{expr} divides by zero: its fixed coefficients need values that keep {expr.right} nonzero'
        ) from None


def _indexed_symbol(expr: Coeff) -> bool:
    """Whether a coefficient is exactly ``a[j]``, whose values at one step are one row of its parameter."""
    return isinstance(expr, Sym) and expr.index is not None


def _literal(code: Code) -> str:
    """Source of a folded constant or tensor expression; a constant folded out of range (two terms of -1e308
    that read the same iterate) is ``float('-inf')``, as the sum it stands for overflows too."""
    if not isinstance(code, float):
        return code
    return repr(code) if math.isfinite(code) else f"float('{code}')"


def linear_combination(pairs: list[tuple[Code, str]]) -> str | None:
    """Source of ``sum coeff * value`` as fused multiply-adds: ``torch.addcmul`` for tensor coefficients,
    ``torch.add(alpha=)`` for numbers, a plain ``+`` for ones; zero terms vanish (None when all do).

    Terms reading the same tensor (``x[k]`` and ``x[k-1]`` at a stage's first step) merge into one coefficient.
    The first operation makes a new tensor and the later ones accumulate into it in place (``add_``, ``addcmul_``):
    none of them saves its output for backward, and no input is overwritten."""
    merged: dict[str, Code] = {}
    for coeff, value in pairs:
        merged[value] = fold('+', merged[value], coeff) if value in merged else coeff
    pairs = sorted(
        [(c, v) for v, c in merged.items() if not is_number(c, 0.0)], key=lambda p: not is_number(p[0], 1.0)
    )  # stable: unit terms first
    if not pairs:
        return None
    coeff, value = pairs[0]
    fresh = not is_number(coeff, 1.0)  # total is a tensor made here, safe to accumulate into
    total = f'{_literal(coeff)} * {value}' if fresh else value
    infix = fresh  # total ends in an operator expression: parenthesise before a method call
    for coeff, value in pairs[1:]:
        head = f'({total})' if infix else total
        if is_number(coeff, 1.0):
            total, infix = (f'{head}.add_({value})', False) if fresh else (f'{total} + {value}', True)
        elif isinstance(coeff, float):
            total, infix = (
                (
                    f'{head}.add_({value}, alpha={_literal(coeff)})'
                    if fresh
                    else f'torch.add({total}, {value}, alpha={_literal(coeff)})'
                ),
                False,
            )
        else:
            total, infix = (
                (f'{head}.addcmul_({coeff}, {value})' if fresh else f'torch.addcmul({total}, {coeff}, {value})'),
                False,
            )
        fresh = True
    return total


@dataclass
class StageSpec:
    """What the generator needs besides the plan."""

    steps: int
    resolve: Callable[[str, int, int | None], Code]  # coefficient symbol at (step, j) -> code
    rows: Callable[[str], str | None]  # source of a[j]'s rows a[0..step], one a step, where a is a tensor
    activation: bool  # apply self.act after each step
    skip_first: bool  # dense stages: x[0] has another width, plain reads of it are left out of sums
    widths: tuple[int, int] = (0, 0)  # dense stages: the input's and each step's width
    folded: frozenset = frozenset()  # (step, stream) whose T-term coefficient lives in T's weights
    output: str = 'last'  # 'last' (mean of the streams' last iterates) or 'concat' (the whole history)
    transition: bool = False  # call self.transition on the input first


KINDS = {
    'window': '{stream}_{index}',
    'new': '{stream}_new',
    'history': 'h_{stream}',
    'sum': 'S_{stream}',
    'difference': 'D_{stream}',
    'concat': 'c_{stream}',
    'rows': 'rows_{stream}',
}
"""The variables of a generated forward, by kind: ``x_k-i`` (window), ``x[k+1]`` (new), the kept history, the
running sum, the running difference of two streams (``D_y_x``), the concatenated history of a stream and the rows
of a coefficient ``a[j]`` (``rows_a``); each kind's readable name for a stream ``x`` (or coefficient ``a``)."""


class Namespace:
    """Collision-free variable names by construction, as torch.fx's ``_Namespace``: each ``(kind, stream, index)``
    gets its readable name, or that name suffixed ``_1``, ``_2``, ... when another variable (or a name the forward
    needs: ``self``, ``torch``, ``x_in``, builtins and keywords) holds it. Streams ``S`` and ``new`` both want
    ``S_new``; the second one gets ``S_new_1``."""

    RESERVED = frozenset({'self', 'torch', 'x_in', 'List', 'Optional', *keyword.kwlist, *dir(builtins)})

    def __init__(self):
        self.names: dict[tuple, str] = {}
        self.kinds: dict[str, str] = {}  # name -> kind, for the tensors a forward holds

    def __call__(self, kind: str, stream: str, index: int = 0) -> str:
        key = (kind, stream, index)
        if key not in self.names:
            wanted = name = KINDS[kind].format(stream=stream, index=index)
            suffix = 0
            while name in self.kinds or name in self.RESERVED:
                suffix += 1
                name = f'{wanted}_{suffix}'
            self.names[key], self.kinds[name] = name, kind
        return self.names[key]


class _Generator:
    def __init__(self, plan: Plan, spec: StageSpec, keep_difference: bool = True):
        self.plan, self.spec, self.keep_difference = plan, spec, keep_difference
        self.name = Namespace()
        self.lines = ['def forward(self, x_in: torch.Tensor) -> torch.Tensor:']
        self.history_lags: dict[str, int] = {}  # stream -> oldest lag read from its kept history
        self.sums_read: set[str] = set()  # streams whose running sum some term reads with a nonzero coefficient
        self.difference_read = False  # whether some term reads the plan's running difference
        self.concatenated: set[str] = set()  # streams whose history this step reads as one concatenation
        self.split: set[str] = set()  # coefficients a[j] whose rows the forward has split

    def emit(self, line: str):
        self.lines.append('    ' + line)

    def read(self, stream: StreamPlan, lag: int, step: int) -> str | None:
        """Source that reads ``stream[k-lag]`` at ``step``; reads before the stage start give its input, and
        ``stream[k+1]`` (lag -1) is the new iterate an earlier update of this step assigned."""
        if lag < 0:
            return self.name('new', stream.stream)
        index = max(step - lag, 0)
        if self.spec.skip_first and index == 0:
            return None
        if stream.whole_history:
            self.history_lags[stream.stream] = max(self.history_lags.get(stream.stream, 0), step - index)
            return f'{self.name("history", stream.stream)}[{index}]'
        return self.name('window', stream.stream, min(lag, step))

    def combination(self, terms, step: int, stream: StreamPlan) -> str:
        pairs = [pair for t in terms for pair in self.term(t, step, stream)]
        return linear_combination(pairs) or f'torch.zeros_like({self.any_iterate()})'

    def row(self, name: str, step: int, start: int) -> str | None:
        """``a[start..step]`` at ``step`` as one tensor, where ``a`` is a tensor (None where its values are literals).

        The forward splits ``a`` into its rows once, where it first reads one: each row's gradient is then one
        slice of ``a``'s. A slice of ``a`` a step made inductor sum a masked copy of every step's gradient into
        ``a``'s, kernels as long as the stage (``benchmarks/vs_timm.py --compile``)."""
        split = self.spec.rows(name)
        if split is None:
            return None
        rows = self.name('rows', name)
        if name not in self.split:
            self.split.add(name)
            self.emit(f'{rows} = {split}')
        return f'{rows}[{step}][{start}:]' if start else f'{rows}[{step}]'

    def any_iterate(self) -> str:
        return self.last(self.plan.streams[0])

    def last(self, s: StreamPlan) -> str:
        """The stream's latest iterate."""
        return f'{self.name("history", s.stream)}[-1]' if s.whole_history else self.name('window', s.stream)

    def term(self, term: Term, step: int, owner: StreamPlan) -> list[tuple[Code, str]]:
        """The ``(coefficient, tensor source)`` pairs that a term contributes at ``step``."""
        value = term.value
        resolve = lambda name, j: self.spec.resolve(name, step, j)  # noqa: E731
        if isinstance(value, HistorySum):
            return self.history_sum(term, step, owner, resolve)
        coeff = emit_coeff(term.coeff, resolve, None)
        if isinstance(value, Iterate):
            source = self.read(self.plan.stream(value.stream), value.lag, step)
            if source is None:
                raise ValueError(f'{value} reads the dense stage input x[0], whose width differs from the steps')
            return [(coeff, source)]
        if isinstance(value, DataGradient):
            return [(coeff, f'self.data_gradient({self.combination(value.terms, step, owner)})')]
        assert isinstance(value, Transform)
        if (step, owner.stream) in self.spec.folded:
            coeff = 1.0
        inner = self.combination(value.terms, step, owner)
        return [(coeff, f'self.T_{owner.stream}[{step}]({inner})')]

    def history_sum(self, term: Term, step: int, owner: StreamPlan, resolve) -> list[tuple[Code, str]]:
        value = term.value
        stream = self.plan.stream(value.stream)
        first = 1 if self.spec.skip_first else 0
        coeffs = [emit_coeff(term.coeff, resolve, j) for j in range(step + 1)]
        if not value.transformed and not any(s.index is not None for s in symbols(term.coeff)):
            if coeffs[0] == 0.0 or step < first:  # folded away, or the running sum from x[first] is still empty
                return []
            if self.plan.difference and stream.stream in self.plan.difference:
                return self.difference(stream.stream, coeffs[0])
            self.sums_read.add(stream.stream)
            return [(coeffs[0], self.name('sum', stream.stream))]
        if value.transformed and owner.fused:
            return [(1.0, self.fused_sum(term, coeffs, step, owner, stream))]
        fused_row = not value.transformed and step >= first and _indexed_symbol(term.coeff) and owner.fused
        row = self.row(term.coeff.name, step, first) if fused_row else None
        if row:
            # sum_j b[j]*x[j] over the concatenation the fused T reads anyway (see weighted_iterates): no k-times-wide
            # temporary, no extra saved tensor
            self.concatenated.add(stream.stream)
            cat = self.name('concat', stream.stream)
            in_width, width = self.spec.widths
            if first and in_width % width == 0:
                # x[0] as in_width/width zero-weighted iterates: the product reads the whole concatenation, whose
                # gradient then needs no slice_scatter (those kernels nearly doubled inductor's compile time)
                row, first = f'torch.nn.functional.pad({row}, ({in_width // width}, 0))', 0
            history = f'{cat}[:, {in_width}:]' if first else cat
            return [(1.0, f'weighted_iterates({row}, {history}, {self.last(stream)})')]
        parts = []
        for j, c in enumerate(coeffs):
            if c == 0.0 or (j < first and not value.transformed):
                continue
            read = self.read(stream, step - j, step)
            if read is None:
                raise ValueError(f'{term} applies one T to x[0] and to the steps, whose widths differ')
            parts.append((c, f'self.T_{owner.stream}[{step}]({read})' if value.transformed else read))
        return parts

    def difference(self, stream: str, coeff: Code) -> list[tuple[Code, str]]:
        """``c*sum_j a[j] - c*sum_j b[j]`` as ``c*D``: the term of ``a`` reads D, ``b``'s is in it. D starts as
        zeros (both streams start as the stage input), still read at step 0 so that ``c`` gets its (zero) gradient
        there as it did from the two sums: DDP expects every parameter to receive one."""
        a, b = self.plan.difference
        if stream == b:
            return []
        self.difference_read = True
        return [(coeff, self.name('difference', f'{a}_{b}'))]

    def fused_sum(self, term: Term, coeffs: list, step: int, owner: StreamPlan, stream: StreamPlan) -> str:
        history = self.name('history', stream.stream)
        if (step, owner.stream) in self.spec.folded or all(c == 1.0 for c in coeffs):
            scales = 'None'
        elif _indexed_symbol(term.coeff) and (row := self.row(term.coeff.name, step, 0)):
            scales = row  # exactly a[j]: one row of a
        else:
            like = f'{history}[0]'
            scales = (
                'torch.stack(['
                + ', '.join(f'{like}.new_full((), {_literal(c)})' if isinstance(c, float) else c for c in coeffs)
                + '])'
            )
        self.concatenated.add(stream.stream)
        return f'self.T_{owner.stream}[{step}]({self.name("concat", stream.stream)}, {scales})'

    def generate(self) -> str:
        streams, name = self.plan.streams, self.name
        if self.spec.transition:
            self.emit('x_in = self.transition(x_in)')
        for s in streams:
            if s.whole_history:
                self.emit(f'{name("history", s.stream)} = [x_in]')
            else:
                for i in range(s.window):
                    self.emit(f'{name("window", s.stream, i)} = x_in')
            if s.accumulator and not self.spec.skip_first:
                self.emit(f'{name("sum", s.stream)} = x_in')
        if self.plan.difference and self.keep_difference:
            self.emit(f'{name("difference", "_".join(self.plan.difference))} = torch.zeros_like(x_in)')
        for step in range(self.spec.steps):
            self.emit(f'# step {step}')
            self.concatenated = set()
            updates = [(s, self.combination(s.terms, step, s)) for s in streams]
            for stream in sorted(self.concatenated):
                self.emit(f'{name("concat", stream)} = torch.cat({name("history", stream)}, 1)')
            for s, update in updates:
                if self.spec.activation:
                    update = f'self.act({update})'
                self.emit(f'{name("new", s.stream)} = {update}')
            for s in streams:
                self.advance(s, step)
            if self.plan.difference and self.keep_difference and step < self.spec.steps - 1:  # else unread
                a, b = self.plan.difference
                d = name('difference', f'{a}_{b}')
                self.emit(f'{d} = {d} + ({name("new", a)} - {name("new", b)})')
        self.emit(f'return {self.output()}')
        return '\n'.join(self.lines) + '\n'

    def advance(self, s: StreamPlan, step: int):
        name, new = self.name, self.name('new', s.stream)
        if s.whole_history:
            self.emit(f'{name("history", s.stream)}.append({new})')
        else:
            for i in range(s.window - 1, 0, -1):
                self.emit(f'{name("window", s.stream, i)} = {name("window", s.stream, i - 1)}')
            self.emit(f'{name("window", s.stream)} = {new}')
        if s.accumulator:  # a dense stage's sum leaves out x[0], whose width differs
            start = self.spec.skip_first and step == 0
            total = name('sum', s.stream)
            self.emit(f'{total} = {"" if start else f"{total} + "}{new}')

    def output(self) -> str:
        if self.spec.output == 'concat':
            (stream,) = self.plan.streams
            return f'torch.cat({self.name("history", stream.stream)}, 1)'
        last = [self.last(s) for s in self.plan.streams]
        return last[0] if len(last) == 1 else f'({" + ".join(last)}) * {1 / len(last)!r}'


@dataclass(frozen=True)
class Forward:
    """A generated forward: its source and the kind (``KINDS``) of each variable it assigns."""

    code: str
    variables: dict


def generate_forward(plan: Plan, spec: StageSpec) -> Forward:
    """Source of the stage's forward. History analysis runs again after constant folding: a stream kept in full
    whose folded coefficients leave only its latest iterates read keeps just a window, and a running sum or
    difference that no term reads any more (fixed merge-and-run's dual) is not kept."""
    generator = _Generator(plan, spec)
    source = generator.generate()
    shrink = {
        s.stream: generator.history_lags.get(s.stream, 0) + 1
        for s in plan.streams
        if s.whole_history and not s.fused and spec.output == 'last'
    }
    unread = {s.stream for s in plan.streams if s.accumulator and s.stream not in generator.sums_read}
    if not shrink and not unread and generator.difference_read == bool(plan.difference):
        return Forward(source, generator.name.kinds)
    streams = tuple(
        replace(
            s,
            whole_history=s.whole_history and s.stream not in shrink,
            window=max(s.window, shrink.get(s.stream, 0)),
            accumulator=s.accumulator and s.stream not in unread,
        )
        for s in plan.streams
    )
    generator = _Generator(replace(plan, streams=streams), spec, keep_difference=generator.difference_read)
    return Forward(generator.generate(), generator.name.kinds)


_counter = itertools.count()


def compile_forward(source: str) -> Callable:
    """Turn generated source into a function whose source TorchScript and ``inspect`` can read back.

    ``dont_inherit``: the ``from __future__`` flags of this module do not leak into the generated code."""
    import torch
    from typing import List, Optional

    from .ops import weighted_iterates

    filename = f'<optnets-stage-{next(_counter)}>'
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    scope = {'torch': torch, 'List': List, 'Optional': Optional, 'weighted_iterates': weighted_iterates}
    exec(compile(source, filename, 'exec', dont_inherit=True), scope)
    return scope['forward']
