"""Plan -> Program: the one lowered form of a stage, each step a short list of operations on tensor values.

A ``Program`` is what a compiled stage runs and what ``optnets plan`` prints. Per step: the histories it reads as
one concatenation and each stream's update, a small tree of values (iterates read, weighted sums, calls of T, the
data gradient). Coefficients are folded where fixed (``emit_coeff``): ``1*T(x) + 1*x + 0*x_prev`` is
``T(x) + x``. The tensors to keep are then decided once, from what the folded updates read: a stream kept in full
whose reads reach back only a few steps keeps that window, and a running sum or difference that no update reads
is not kept. ``codegen`` prints a program as Python, as torch.fx prints its Graph; LPOM's topology reads its
updates. The reference semantics (``rules/semantics.py``) stay an independent oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Union

from ..rules.ir import OPERATORS, BinOp, Coeff, DataGradient, HistorySum, Iterate, Num, Sym, Term, Transform
from .plan import Plan, StreamPlan, has_indexed_coeff

Code = Union[float, str]
"""A coefficient: a folded number, or Python source of a tensor expression (a learned coefficient's entry)."""


# -- coefficients ---------------------------------------------------------------------------------------------------
def is_number(code: Code, value: float) -> bool:
    """Whether ``code`` is the folded constant ``value`` (source text and tensors never are)."""
    return isinstance(code, float) and code == value


def fold(op: str, left: Code, right: Code) -> Code:
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
    return f'({literal(left)} {op} {literal(right)})'


def emit_coeff(expr: Coeff, resolve: Callable[[str, int | None], Code], j: int | None) -> Code:
    """A coefficient expression with constants folded by ``fold``: source text, or, when ``resolve`` gives values
    (numbers or tensors) instead of source, its value. A fixed coefficient of zero that divides raises a
    ``ValueError`` naming the expression."""
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


def literal(code: Code) -> str:
    """Source of a folded constant or tensor expression; a constant folded out of range (two terms of -1e308
    that read the same iterate) is ``float('-inf')``, as the sum it stands for overflows too."""
    if not isinstance(code, float):
        return code
    return repr(code) if math.isfinite(code) else f"float('{code}')"


# -- values: what an update computes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Read:
    """The iterate ``stream[index]``, counted from the stage's start (``stream[0]`` is the stage input)."""

    stream: str
    index: int


@dataclass(frozen=True)
class New:
    """``stream[k+1]``, which an earlier update of this step assigned."""

    stream: str


@dataclass(frozen=True)
class Latest:
    """The stream's latest iterate."""

    stream: str


@dataclass(frozen=True)
class RunningSum:
    """``sum_j stream[j]``, kept as a running sum."""

    stream: str


@dataclass(frozen=True)
class RunningDifference:
    """``sum_j (a[j] - b[j])``, kept as one running difference."""

    a: str
    b: str


@dataclass(frozen=True)
class Zeros:
    """A zero tensor shaped like ``like`` (an update whose every term folded away)."""

    like: Latest


@dataclass(frozen=True)
class Concat:
    """The stream's history read as one concatenation along channels."""

    stream: str


@dataclass(frozen=True)
class Row:
    """``a[start..step]``: one row of a learned indexed coefficient ``a[j]``."""

    name: str
    step: int
    start: int = 0


@dataclass(frozen=True)
class Padded:
    """A row with ``left`` zeros before it (the dense input read as that many zero-weighted iterates)."""

    row: Row
    left: int


@dataclass(frozen=True)
class Stack:
    """The scales ``c[0..step]`` of a fused sum as one tensor, made like ``like``."""

    scales: tuple
    like: Read


@dataclass(frozen=True)
class Weighted:
    """``sum_j row[j] * x[j]`` over the concatenated history (from channel ``start``), shaped like ``last``."""

    row: Row | Padded
    history: Concat
    start: int
    last: Latest


@dataclass(frozen=True)
class CallT:
    """The step's ``T`` of ``stream`` on ``arg``; a fused call reads the concatenated history with ``scales``
    (``None``: all ones)."""

    stream: str
    step: int
    arg: Value
    fused: bool = False
    scales: Row | Stack | None = None


@dataclass(frozen=True)
class Gradient:
    """``G(arg)``, the data term's gradient."""

    arg: Value


@dataclass(frozen=True)
class Combination:
    """``sum c*v`` over ``pairs``: no zero coefficients, one pair per value, unit coefficients first."""

    pairs: tuple


Value = Union[
    Read,
    New,
    Latest,
    RunningSum,
    RunningDifference,
    Zeros,
    Concat,
    Row,
    Padded,
    Stack,
    Weighted,
    CallT,
    Gradient,
    Combination,
]
"""A tensor an update computes: the nodes of a program's updates."""


def combine(pairs: list[tuple[Code, Value]], like: Latest) -> Value:
    """The canonical value of ``sum c*v``: pairs reading the same value merge into one coefficient (``x[k]`` and
    ``x[k-1]`` at a stage's first step), zero terms vanish (``Zeros`` when all do), unit terms come first, and
    ``1*v`` is ``v``."""
    merged: dict[Value, Code] = {}
    for coeff, value in pairs:
        merged[value] = fold('+', merged[value], coeff) if value in merged else coeff
    kept = sorted(
        [(c, v) for v, c in merged.items() if not is_number(c, 0.0)], key=lambda p: not is_number(p[0], 1.0)
    )  # stable: unit terms first
    if not kept:
        return Zeros(like)
    if len(kept) == 1 and is_number(kept[0][0], 1.0):
        return kept[0][1]
    return Combination(tuple(kept))


def terms(value: Value) -> tuple[tuple[Code, Value], ...]:
    """``value`` as ``sum c*v``: a combination's pairs, none for zeros, else ``value`` itself with coefficient 1."""
    if isinstance(value, Combination):
        return value.pairs
    return () if isinstance(value, Zeros) else ((1.0, value),)


def children(value: Value) -> tuple[Value, ...]:
    """The values ``value`` reads directly."""
    if isinstance(value, Combination):
        return tuple(v for _, v in value.pairs)
    if isinstance(value, CallT):
        return (value.arg,) + ((value.scales,) if value.scales is not None else ())
    if isinstance(value, Gradient):
        return (value.arg,)
    if isinstance(value, Weighted):
        return (value.row, value.history, value.last)
    if isinstance(value, Padded):
        return (value.row,)
    if isinstance(value, Stack):
        return (value.like,)
    if isinstance(value, Zeros):
        return (value.like,)
    return ()


def walk(value: Value) -> Iterator[Value]:
    """``value`` and every value under it, depth first."""
    yield value
    for child in children(value):
        yield from walk(child)


# -- the program ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What a program needs besides the plan and its coefficients: the steps and the stage's shape."""

    steps: int
    activation: bool  # apply the activation after each step
    skip_first: bool  # dense stages: x[0] has another width, plain reads of it are left out of sums
    widths: tuple[int, int] = (0, 0)  # dense stages: the input's and each step's width
    folded: frozenset = frozenset()  # (step, stream) whose T-term coefficient lives in T's weights
    output: str = 'last'  # 'last' (mean of the streams' last iterates) or 'concat' (the whole history)
    transition: bool = False  # run the transition on the input first
    transforms_read_data: bool = False  # each T is called with the data too (a reconstruction phase)


@dataclass(frozen=True)
class Step:
    """One step: each stream's new iterate."""

    index: int
    updates: tuple[tuple[str, Value], ...]  # (stream, value before the activation)

    def values(self) -> Iterator[Value]:
        """Every value the step computes or reads, update by update, depth first."""
        for _, update in self.updates:
            yield from walk(update)

    @property
    def shared(self) -> tuple[Value, ...]:
        """The calls of ``T`` and ``G`` that the step reads more than once (ADMM's ``G(z - u)``, read by both
        updates), in the order first read: each is computed once, before the first update that reads it."""
        seen: set[Value] = set()
        repeated: dict[Value, None] = {}

        def visit(value: Value):
            if isinstance(value, (CallT, Gradient)):
                if value in seen:
                    repeated[value] = None
                    return  # computed once: what it reads is read once
                seen.add(value)
            for child in children(value):
                visit(child)

        for _, update in self.updates:
            visit(update)
        return tuple(repeated)

    @property
    def concats(self) -> tuple[str, ...]:
        """The streams whose history the step reads as one concatenation (fused calls of T, weighted sums)."""
        return tuple(sorted({v.stream for v in self.values() if isinstance(v, Concat)}))


@dataclass(frozen=True)
class Program:
    """A stage's steps as data. ``streams`` are the plan's with the keeping decided after folding, ``difference``
    the running difference kept (or None)."""

    plan: Plan
    settings: Settings
    steps: tuple[Step, ...]
    streams: tuple[StreamPlan, ...]
    difference: tuple[str, str] | None

    def stream(self, name: str) -> StreamPlan:
        return next(s for s in self.streams if s.stream == name)

    @property
    def reads_data(self) -> bool:
        """Whether the stage takes data (measurements and physics) as an argument: its updates read ``G``, or its
        transforms do."""
        return self.settings.transforms_read_data or any(
            isinstance(v, Gradient) for step in self.steps for v in step.values()
        )

    def kept_tensors(self) -> int:
        """Tensors held between steps: each window, running sum and difference, and a whole history's entries
        (one per step: it grows with depth)."""
        return sum((self.settings.steps + 1 if s.whole_history else s.window) + s.accumulator for s in self.streams) + (
            self.difference is not None
        )

    def calls(self, step: int) -> list[CallT | Gradient]:
        """The calls of ``T`` and ``G`` at a step, each once (``Step.shared``), in the order first read."""
        return list(dict.fromkeys(v for v in self.steps[step].values() if isinstance(v, (CallT, Gradient))))

    def __str__(self) -> str:
        settings = self.settings
        lines = [str(self.plan), f'  program, {settings.steps} step(s):']
        if settings.transition:
            lines.append('    x[0] = transition(input)')
        for step in self.steps:
            names = {value: SHARED.format(index=i) for i, value in enumerate(step.shared)}
            printed: set[Value] = set()
            for stream, update in step.updates:
                for value in shared_first(update, names, printed):
                    text = describe(value, step.index, {v: n for v, n in names.items() if v != value})
                    lines.append(f'    step {step.index}: {names[value]} = {text}')
                text = describe(update, step.index, names)
                text = f'act({text})' if settings.activation else text
                lines.append(f'    step {step.index}: {stream}[{step.index + 1}] = {text}')
        lines.append('  kept between steps:')
        for s in self.streams:
            if s.whole_history:
                keep = f'the whole history {s.stream}[0..k] (a sum reads each {s.stream}[j] separately)'
            else:
                keep = ', '.join([f'{s.stream}[k]'] + [f'{s.stream}[k-{i}]' for i in range(1, s.window)])
            if s.accumulator:
                keep += f'; running sum S_{s.stream} = sum_j {s.stream}[j], updated S += {s.stream}[k+1]'
            lines.append(f'    {s.stream}: {keep}')
        if self.difference:
            a, b = self.difference
            lines.append(
                f'    running difference D = sum_j ({a}[j] - {b}[j]), updated D += {a}[k+1] - {b}[k+1]: the sums '
                f'of {a} and {b} are only read as c*(S_{a} - S_{b}), so one accumulator keeps their difference '
                'without cancelling two large sums'
            )
        lines.append(f'  tensors kept: {self.kept_tensors()}')
        return '\n'.join(lines)


SHARED = 'v{index}'
"""The name of a step's ``index``-th shared call (``Step.shared``), in the printed program and the generated code."""


def shared_first(value: Value, shared: dict, done: set) -> Iterator[Value]:
    """The values of ``shared`` that ``value`` reads and ``done`` lacks, each after those it reads; each one yielded
    is added to ``done``: the order in which to compute them before ``value``."""
    if value in done:
        return
    for child in children(value):
        yield from shared_first(child, shared, done)
    if value in shared:
        done.add(value)
        yield value


def describe(value: Value, step: int, names: dict | None = None) -> str:
    """``value`` as readable text: iterates by their index, coefficients by name (``b1[2]``: step 2's), the values
    in ``names`` by their name."""
    if names and value in names:
        return names[value]
    coeff = lambda c: literal(c).replace('self.coeff.', '') if not isinstance(c, float) else f'{c:g}'  # noqa: E731
    if isinstance(value, Read):
        return f'{value.stream}[{value.index}]'
    if isinstance(value, New):
        return f'{value.stream}[{step + 1}]'
    if isinstance(value, Latest):
        return f'{value.stream}[{step}]'
    if isinstance(value, RunningSum):
        return f'S_{value.stream}'
    if isinstance(value, RunningDifference):
        return 'D'
    if isinstance(value, Concat):
        return f'cat({value.stream}[0..{step}])'
    if isinstance(value, Zeros):
        return '0'
    if isinstance(value, Combination):
        text = ''
        for c, v in value.pairs:
            sign, c = ('-', -c) if isinstance(c, float) and c < 0 else ('+', c)
            term = describe(v, step, names) if is_number(c, 1.0) else f'{coeff(c)}*{describe(v, step, names)}'
            text = f'{text} {sign} {term}' if text else f'-{term}' if sign == '-' else term
        return text
    if isinstance(value, Gradient):
        return f'G({describe(value.arg, step, names)})'
    if isinstance(value, CallT):
        scales = '' if not value.fused or value.scales is None else f', scaled by {describe(value.scales, step, names)}'
        return f'T_{value.stream}[{value.step}]({describe(value.arg, step, names)}{scales})'
    if isinstance(value, Row):
        return f'{value.name}[{value.step}][{value.start}:]' if value.start else f'{value.name}[{value.step}]'
    if isinstance(value, Padded):
        return f'(0 x{value.left}, {describe(value.row, step, names)})'
    if isinstance(value, Stack):
        return f'({", ".join(coeff(c) for c in value.scales)})'
    assert isinstance(value, Weighted), value
    stream = value.history.stream
    return f'sum_j {describe(value.row, step, names)}[j]*{stream}[j] (j = {1 if value.start else 0}..{step})'


Resolve = Callable[[str, int, Union[int, None]], Code]
"""A coefficient symbol at ``(step, j)``: its fixed number, or the source of its learned entry."""


def lower(plan: Plan, settings: Settings, resolve: Resolve, learned: Callable[[str], bool]) -> Program:
    """The program of ``plan`` under ``settings``: every step's updates with coefficients folded (``resolve``;
    ``learned(a)`` says whether ``a`` is a tensor, whose rows ``a[j]`` can be read as one), then what to keep, decided
    from what the folded updates read."""
    lowering = _Lowering(plan, settings, resolve, learned)
    steps = tuple(lowering.step(k) for k in range(settings.steps))
    reads = [(step.index, v) for step in steps for v in step.values()]
    lags: dict[str, int] = {}  # stream -> oldest lag a plain read reaches
    for k, v in reads:
        if isinstance(v, Read):
            lags[v.stream] = max(lags.get(v.stream, 0), k - v.index)
    sums = {v.stream for _, v in reads if isinstance(v, RunningSum)}
    difference = plan.difference if any(isinstance(v, RunningDifference) for _, v in reads) else None
    streams = tuple(
        replace(s, whole_history=False, window=max(s.window, lags.get(s.stream, 0) + 1))
        if s.whole_history and not s.fused and settings.output == 'last'
        else s
        for s in plan.streams
    )
    streams = tuple(replace(s, accumulator=s.accumulator and s.stream in sums) for s in streams)
    return Program(plan, settings, steps, streams, difference)


def lower_fixed(plan: Plan, steps: int, init: str) -> Program:
    """The program of ``steps`` plain steps of ``plan`` (no activation, no transition) with every coefficient fixed
    at its ``init`` value and folded: the numbers a rule's stage starts from."""
    coefficients = {c.name: c for c in plan.coefficients}
    return lower(
        plan,
        Settings(steps=steps, activation=False, skip_first=False),
        lambda name, step, j: coefficients[name].value(init, step, j),
        learned=lambda name: False,
    )


class _Lowering:
    """Lowers one step at a time: the rule's terms, with coefficients resolved at that step, into values."""

    def __init__(self, plan: Plan, settings: Settings, resolve: Resolve, learned: Callable[[str], bool]):
        self.plan, self.settings, self.resolve, self.learned = plan, settings, resolve, learned

    def step(self, k: int) -> Step:
        return Step(k, tuple((s.stream, self.combination(s.terms, k, s)) for s in self.plan.streams))

    def combination(self, terms: tuple[Term, ...], step: int, owner: StreamPlan) -> Value:
        pairs = [pair for t in terms for pair in self.term(t, step, owner)]
        return combine(pairs, Latest(self.plan.streams[0].stream))

    def read(self, stream: StreamPlan, lag: int, step: int) -> Read | New | None:
        """``stream[k-lag]`` at ``step``; reads before the stage start give its input, and ``stream[k+1]`` (lag
        -1) is the new iterate an earlier update of this step assigned. None: the dense input, left out."""
        if lag < 0:
            return New(stream.stream)
        index = max(step - lag, 0)
        if self.settings.skip_first and index == 0:
            return None
        return Read(stream.stream, index)

    def term(self, term: Term, step: int, owner: StreamPlan) -> list[tuple[Code, Value]]:
        """The ``(coefficient, value)`` pairs that a term contributes at ``step``."""
        value = term.value
        resolve = lambda name, j: self.resolve(name, step, j)  # noqa: E731
        if isinstance(value, HistorySum):
            return self.history_sum(term, step, owner, resolve)
        coeff = emit_coeff(term.coeff, resolve, None)
        if isinstance(value, Iterate):
            read = self.read(self.plan.stream(value.stream), value.lag, step)
            if read is None:
                raise ValueError(f'{value} reads the dense stage input x[0], whose width differs from the steps')
            return [(coeff, read)]
        if isinstance(value, DataGradient):
            return [(coeff, Gradient(self.combination(value.terms, step, owner)))]
        assert isinstance(value, Transform)
        if (step, owner.stream) in self.settings.folded:
            coeff = 1.0
        return [(coeff, CallT(owner.stream, step, self.combination(value.terms, step, owner)))]

    def history_sum(self, term: Term, step: int, owner: StreamPlan, resolve: Callable) -> list[tuple[Code, Value]]:
        value = term.value
        stream = self.plan.stream(value.stream)
        first = 1 if self.settings.skip_first else 0
        coeffs = [emit_coeff(term.coeff, resolve, j) for j in range(step + 1)]
        if not value.transformed and not has_indexed_coeff(term):
            if coeffs[0] == 0.0 or step < first:  # folded away, or the running sum from x[first] is still empty
                return []
            if self.plan.difference and stream.stream in self.plan.difference:
                a, b = self.plan.difference  # the term of a reads D, b's is in it
                return [] if stream.stream == b else [(coeffs[0], RunningDifference(a, b))]
            return [(coeffs[0], RunningSum(stream.stream))]
        if value.transformed and owner.fused:
            return [(1.0, self.fused_sum(term, coeffs, step, owner, stream))]
        learned_row = _indexed_symbol(term.coeff) and self.learned(term.coeff.name)
        if not value.transformed and step >= first and learned_row and owner.fused:
            # sum_j b[j]*x[j] over the concatenation the fused T reads anyway (see weighted_iterates): no k-times-wide
            # temporary, no extra saved tensor
            row, in_width, width = Row(term.coeff.name, step, first), *self.settings.widths
            start = in_width if first else 0
            if first and in_width % width == 0:
                # x[0] as in_width/width zero-weighted iterates: the product reads the whole concatenation, whose
                # gradient then needs no slice_scatter (those kernels nearly doubled inductor's compile time)
                row, start = Padded(row, in_width // width), 0
            return [(1.0, Weighted(row, Concat(stream.stream), start, Latest(stream.stream)))]
        parts = []
        for j, c in enumerate(coeffs):
            if c == 0.0 or (j < first and not value.transformed):
                continue
            read = self.read(stream, step - j, step)
            if read is None:
                raise ValueError(f'{term} applies one T to x[0] and to the steps, whose widths differ')
            parts.append((c, CallT(owner.stream, step, read) if value.transformed else read))
        return parts

    def fused_sum(self, term: Term, coeffs: list, step: int, owner: StreamPlan, stream: StreamPlan) -> CallT:
        if (step, owner.stream) in self.settings.folded or all(c == 1.0 for c in coeffs):
            scales = None
        elif _indexed_symbol(term.coeff) and self.learned(term.coeff.name):
            scales = Row(term.coeff.name, step)  # exactly a[j]: one row of a
        else:
            scales = Stack(tuple(coeffs), Read(stream.stream, 0))
        return CallT(owner.stream, step, Concat(stream.stream), fused=True, scales=scales)


def _indexed_symbol(expr: Coeff) -> bool:
    """Whether a coefficient is exactly ``a[j]``, whose values at one step are one row of its parameter."""
    return isinstance(expr, Sym) and expr.index is not None
