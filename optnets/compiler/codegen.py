"""Program -> Python source of a stage's ``forward``, unrolled over its steps.

Printing code from the lowered program (``lower.py``), as torch.fx prints its Graph, keeps the executed program
free of interpretation overhead, makes it readable (``stage.code``) and lets TorchScript and FX see plain tensor
code. Fixed coefficients are number literals, so fixed special values fold away: ``1*T(x) + 1*x + 0*x_prev`` is
emitted as ``T(x) + x``.
"""

from __future__ import annotations

import builtins
import itertools
import keyword
import linecache
from dataclasses import dataclass
from typing import Callable

from .lower import (
    CallT,
    Code,
    Combination,
    Concat,
    Gradient,
    Latest,
    New,
    Padded,
    Program,
    Read,
    Row,
    RunningDifference,
    RunningSum,
    SHARED,
    Stack,
    Weighted,
    Zeros,
    is_number,
    literal,
    shared_first,
)


def linear_combination(pairs: list[tuple[Code, str]]) -> str:
    """Source of ``sum coeff * value`` (the pairs of a ``Combination``: merged, nonzero, unit terms first) as fused
    multiply-adds: ``torch.addcmul`` for tensor coefficients, ``torch.add(alpha=)`` for numbers, a plain ``+`` for
    ones. The first operation makes a new tensor and the later ones accumulate into it in place (``add_``,
    ``addcmul_``): none of them saves its output for backward, and no input is overwritten."""
    coeff, value = pairs[0]
    fresh = not is_number(coeff, 1.0)  # total is a tensor made here, safe to accumulate into
    total = f'{literal(coeff)} * {value}' if fresh else value
    infix = fresh  # total ends in an operator expression: parenthesise before a method call
    for coeff, value in pairs[1:]:
        head = f'({total})' if infix else total
        if is_number(coeff, 1.0):
            total, infix = (f'{head}.add_({value})', False) if fresh else (f'{total} + {value}', True)
        elif isinstance(coeff, float):
            total, infix = (
                (
                    f'{head}.add_({value}, alpha={literal(coeff)})'
                    if fresh
                    else f'torch.add({total}, {value}, alpha={literal(coeff)})'
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


KINDS = {
    'window': '{stream}_{index}',
    'new': '{stream}_new',
    'history': 'h_{stream}',
    'sum': 'S_{stream}',
    'difference': 'D_{stream}',
    'concat': 'c_{stream}',
    'rows': 'rows_{stream}',
    'shared': SHARED,
}
"""The variables of a generated forward, by kind: ``x_k-i`` (window), ``x[k+1]`` (new), the kept history, the
running sum, the running difference of two streams (``D_y_x``), the concatenated history of a stream, the rows
of a coefficient ``a[j]`` (``rows_a``) and a call the step reads more than once (``v0``); each kind's readable name
for a stream ``x`` (or coefficient ``a``, or the call's index in the step)."""


class Namespace:
    """Collision-free variable names by construction, as torch.fx's ``_Namespace``: each ``(kind, stream, index)``
    gets its readable name, or that name suffixed ``_1``, ``_2``, ... when another variable (or a name the forward
    needs: ``self``, ``torch``, ``x_in``, builtins and keywords) holds it. Streams ``S`` and ``new`` both want
    ``S_new``; the second one gets ``S_new_1``."""

    RESERVED = frozenset({'self', 'torch', 'x_in', 'data', 'List', 'Optional', *keyword.kwlist, *dir(builtins)})

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


class _Printer:
    """Prints a program: each value as source, with names from a ``Namespace``."""

    def __init__(self, program: Program, rows: Callable[[str], str]):
        self.program, self.rows = program, rows
        self.name = Namespace()
        data = ', data=None' if program.reads_data else ''  # the data is an argument, never state set around a call
        self.lines = [f'def forward(self, x_in: torch.Tensor{data}) -> torch.Tensor:']
        if program.reads_data:
            self.emit('data = self.data_term(data)')
        self.data = ', data' if program.settings.transforms_read_data else ''  # passed on to each T
        self.split: set[str] = set()  # coefficients a[j] whose rows the forward has split
        self.bound: dict = {}  # the step's shared calls -> their variables

    def emit(self, line: str):
        self.lines.append('    ' + line)

    def source(self, value, step: int) -> str:
        """Source of ``value`` at ``step``: the variable of a shared call, else its expression."""
        return self.bound[value] if value in self.bound else self.expression(value, step)

    def expression(self, value, step: int) -> str:
        """Source of the expression that computes ``value`` at ``step``."""
        name, program = self.name, self.program
        if isinstance(value, Read):
            if program.stream(value.stream).whole_history:
                return f'{name("history", value.stream)}[{value.index}]'
            return name('window', value.stream, step - value.index)
        if isinstance(value, Latest):
            if program.stream(value.stream).whole_history:
                return f'{name("history", value.stream)}[-1]'
            return name('window', value.stream)
        if isinstance(value, New):
            return name('new', value.stream)
        if isinstance(value, RunningSum):
            return name('sum', value.stream)
        if isinstance(value, RunningDifference):
            return name('difference', f'{value.a}_{value.b}')
        if isinstance(value, Concat):
            return name('concat', value.stream)
        if isinstance(value, Zeros):
            return f'torch.zeros_like({self.source(value.like, step)})'
        if isinstance(value, Combination):
            return linear_combination([(c, self.source(v, step)) for c, v in value.pairs])
        if isinstance(value, Gradient):
            return f'data.gradient({self.source(value.arg, step)})'
        if isinstance(value, CallT):
            call = f'self.T_{value.stream}[{value.step}]'
            if value.fused:  # the scales first: they may print the line that splits a coefficient's rows
                scales = 'None' if value.scales is None else self.source(value.scales, step)
                return f'{call}({self.source(value.arg, step)}, {scales}{self.data})'
            return f'{call}({self.source(value.arg, step)}{self.data})'
        if isinstance(value, Row):
            return self.row(value)
        if isinstance(value, Padded):
            return f'torch.nn.functional.pad({self.source(value.row, step)}, ({value.left}, 0))'
        if isinstance(value, Stack):
            like = self.source(value.like, step)
            scales = (f'{like}.new_full((), {literal(c)})' if isinstance(c, float) else c for c in value.scales)
            return f'torch.stack([{", ".join(scales)}])'
        assert isinstance(value, Weighted), value
        row, history = self.source(value.row, step), self.source(value.history, step)
        history = f'{history}[:, {value.start}:]' if value.start else history
        return f'weighted_iterates({row}, {history}, {self.source(value.last, step)})'

    def made_here(self, value) -> bool:
        """Whether ``value``'s source makes a new tensor, rather than naming one the forward holds."""
        return value not in self.bound and not isinstance(value, (Read, Latest, New, RunningSum, RunningDifference))

    def row(self, row: Row) -> str:
        """``a[start..step]``. The forward splits ``a`` into its rows once, where it first reads one: each row's
        gradient is then one slice of ``a``'s. A slice of ``a`` a step made inductor sum a masked copy of every
        step's gradient into ``a``'s, kernels as long as the stage (``benchmarks/vs_timm.py --compile``)."""
        rows = self.name('rows', row.name)
        if row.name not in self.split:
            self.split.add(row.name)
            self.emit(f'{rows} = {self.rows(row.name)}')
        return f'{rows}[{row.step}][{row.start}:]' if row.start else f'{rows}[{row.step}]'

    def generate(self) -> str:
        program, name = self.program, self.name
        settings = program.settings
        if settings.transition:
            self.emit('x_in = self.transition(x_in)')
        for s in program.streams:
            if s.whole_history:
                self.emit(f'{name("history", s.stream)} = [x_in]')
            else:
                for i in range(s.window):
                    self.emit(f'{name("window", s.stream, i)} = x_in')
            if s.accumulator and not settings.skip_first:
                self.emit(f'{name("sum", s.stream)} = x_in')
        if program.difference:
            self.emit(f'{name("difference", "_".join(program.difference))} = torch.zeros_like(x_in)')
        for step in program.steps:
            k = step.index
            self.emit(f'# step {k}')
            self.bound = {value: name('shared', '', i) for i, value in enumerate(step.shared)}
            updates = [(stream, value, self.source(value, k)) for stream, value in step.updates]
            for stream in step.concats:
                self.emit(f'{name("concat", stream)} = torch.cat({name("history", stream)}, 1)')
            computed: set = set()
            for stream, value, update in updates:
                for shared in shared_first(value, self.bound, computed):
                    self.emit(f'{self.bound[shared]} = {self.expression(shared, k)}')
                if settings.activation:  # a copy of a tensor the forward still reads: the activation may be in place
                    update = f'self.act({update}{"" if self.made_here(value) else ".clone()"})'
                self.emit(f'{name("new", stream)} = {update}')
            for s in program.streams:
                self.advance(s, k)
            if program.difference and k < settings.steps - 1:  # else unread
                a, b = program.difference
                d = name('difference', f'{a}_{b}')
                self.emit(f'{d} = {d} + ({name("new", a)} - {name("new", b)})')
        self.emit(f'return {self.output()}')
        return '\n'.join(self.lines) + '\n'

    def advance(self, s, step: int):
        name, new = self.name, self.name('new', s.stream)
        if s.whole_history:
            self.emit(f'{name("history", s.stream)}.append({new})')
        else:
            for i in range(s.window - 1, 0, -1):
                self.emit(f'{name("window", s.stream, i)} = {name("window", s.stream, i - 1)}')
            self.emit(f'{name("window", s.stream)} = {new}')
        if s.accumulator:  # a dense stage's sum leaves out x[0], whose width differs
            start = self.program.settings.skip_first and step == 0
            total = name('sum', s.stream)
            self.emit(f'{total} = {"" if start else f"{total} + "}{new}')

    def output(self) -> str:
        streams = self.program.streams
        if self.program.settings.output == 'concat':
            (stream,) = streams
            return f'torch.cat({self.name("history", stream.stream)}, 1)'
        last = [self.source(Latest(s.stream), self.program.settings.steps) for s in streams]
        return last[0] if len(last) == 1 else f'({" + ".join(last)}) * {1 / len(last)!r}'


@dataclass(frozen=True)
class Forward:
    """A generated forward: its source and the kind (``KINDS``) of each variable it assigns."""

    code: str
    variables: dict


def generate_forward(program: Program, rows: Callable[[str], str]) -> Forward:
    """Source of the stage's forward: ``program`` printed line by line; ``rows(a)`` is the source that splits a
    learned ``a[j]`` into its rows, printed where a step first reads one."""
    printer = _Printer(program, rows)
    return Forward(printer.generate(), printer.name.kinds)


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
