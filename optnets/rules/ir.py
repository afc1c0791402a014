"""The rule IR: an update rule as plain data, with its canonical text.

A rule is one ``Update`` per stream. Each update is a linear combination of terms ``coeff * value``,
where the value reads the past: an ``Iterate`` ``x[k-lag]``, a ``Transform`` ``T(...)`` of a
linear combination of iterates, or a ``HistorySum`` ``sum_j coeff(j) * x[j]`` / ``T(x[j])``.
Coefficients are small arithmetic trees of numbers and symbols (``Num``, ``Sym``, ``BinOp``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Union

# ---------------------------------------------------------------------------------------------------------------
# coefficient expressions


@dataclass(frozen=True)
class Num:
    value: float

    def __str__(self) -> str:
        text = repr(float(self.value))
        return text[:-2] if text.endswith('.0') else text


@dataclass(frozen=True)
class Sym:
    """A coefficient symbol: a learnable scalar ``b1`` or, with ``index``, one per history entry ``a[j]``."""

    name: str
    index: str | None = None

    def __str__(self) -> str:
        return self.name if self.index is None else f'{self.name}[{self.index}]'


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * /
    left: 'Coeff'
    right: 'Coeff'

    def __str__(self) -> str:
        prec = _PRECEDENCE[self.op]
        left = _wrap(self.left, prec, strict=False)
        right = _wrap(self.right, prec, strict=True)  # a + (b - c) re-parses as the same tree
        return (
            f'{left} {self.op} {right}'
            if self.op in '+-'
            else f'{left}*{right}'
            if self.op == '*'
            else f'{left}/{right}'
        )


Coeff = Union[Num, Sym, BinOp]
OPERATORS = {'+': lambda a, b: a + b, '-': lambda a, b: a - b, '*': lambda a, b: a * b, '/': lambda a, b: a / b}
"""The arithmetic of a coefficient: what ``BinOp.op`` means, on numbers, tensors or anything that has it. The
reference semantics evaluate with it and the code generator folds constants with it."""
_PRECEDENCE = {'+': 1, '-': 1, '*': 2, '/': 2}


def _precedence(expr: Coeff) -> int:
    if isinstance(expr, BinOp):
        return _PRECEDENCE[expr.op]
    if isinstance(expr, Num) and expr.value < 0:
        return 1.5  # a negative literal binds like a unary minus
    return 3


def _wrap(expr: Coeff, prec: int, strict: bool) -> str:
    inner = _precedence(expr)
    return f'({expr})' if inner < prec or (strict and inner == prec) else str(expr)


ONE = Num(1.0)


def mul(left: Coeff, right: Coeff) -> Coeff:
    """Product in canonical form: numbers fold into the leftmost factor (where a unary minus binds when the text
    is read back), a factor of one disappears."""
    if isinstance(right, Num) and not isinstance(left, Num):
        left, right = right, left
    if isinstance(left, Num):
        if isinstance(right, Num):
            return Num(left.value * right.value)
        if left.value == 1:
            return right
        if isinstance(right, BinOp) and right.op == '*':  # c*(a*b) is (c*a)*b, as -a*b parses
            return mul(mul(left, right.left), right.right)
        if isinstance(right, BinOp) and right.op == '/':  # c*(a/b) is (c*a)/b, as -a/b parses
            return BinOp('/', mul(left, right.left), right.right)
    return BinOp('*', left, right)


def div(left: Coeff, right: Coeff) -> Coeff:
    """Quotient in canonical form; the caller refuses a zero divisor."""
    if isinstance(left, Num) and isinstance(right, Num):
        return Num(left.value / right.value)
    if isinstance(right, Num):
        return mul(Num(1.0 / right.value), left)
    return BinOp('/', left, right)


def add(left: Coeff, right: Coeff) -> Coeff:
    """Sum: numbers fold, the rest stays as written."""
    if isinstance(left, Num) and isinstance(right, Num):
        return Num(left.value + right.value)
    return BinOp('+', left, right)


def sub(left: Coeff, right: Coeff) -> Coeff:
    if isinstance(left, Num) and isinstance(right, Num):
        return Num(left.value - right.value)
    return BinOp('-', left, right)


def is_identically_zero(expr: Coeff, draws: int = 3) -> bool:
    """Whether ``expr`` is zero whatever its symbols hold (``d - d``, ``0*d``): zero at ``draws`` random points
    (a rational function of a few symbols that is not zero everywhere is zero at a random point with probability
    0). The draws are seeded, so the answer is the same on every call."""
    rng = random.Random(0)
    for _ in range(draws):
        values = {sym: rng.uniform(0.5, 2.0) for sym in symbols(expr)}
        try:
            if _value(expr, values) != 0:
                return False
        except ZeroDivisionError:
            return False
    return True


def _value(expr: Coeff, values: dict) -> float:
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Sym):
        return values[expr]
    return OPERATORS[expr.op](_value(expr.left, values), _value(expr.right, values))


def numbers(expr: Coeff) -> list[float]:
    """The number literals of a coefficient expression."""
    if isinstance(expr, Num):
        return [expr.value]
    return numbers(expr.left) + numbers(expr.right) if isinstance(expr, BinOp) else []


def size(expr: Coeff) -> int:
    """Operators in a coefficient expression."""
    return size(expr.left) + size(expr.right) + 1 if isinstance(expr, BinOp) else 0


def symbols(expr: Coeff) -> set[Sym]:
    if isinstance(expr, Sym):
        return {expr}
    if isinstance(expr, BinOp):
        return symbols(expr.left) | symbols(expr.right)
    return set()


def is_negative(expr: Coeff) -> bool:
    """Whether the canonical text of ``expr`` starts with a minus (so a sum prints it as ``- ...``)."""
    if isinstance(expr, Num):
        return expr.value < 0
    return isinstance(expr, BinOp) and expr.op in '*/' and is_negative(expr.left)  # a number leads a product


# ---------------------------------------------------------------------------------------------------------------
# values a term reads


@dataclass(frozen=True)
class Iterate:
    """``stream[k-lag]``: the iterate ``lag`` steps back (lag 0 is the current one; lag -1 is ``stream[k+1]``,
    already computed this step by an earlier update: a Gauss-Seidel read)."""

    stream: str
    lag: int = 0

    def __str__(self) -> str:
        if self.lag <= 0:
            return f'{self.stream}[k{"+1" if self.lag else ""}]'
        return f'{self.stream}[k-{self.lag}]'


@dataclass(frozen=True)
class Transform:
    """``T(c1*x[k] + c2*x[k-1] + ...)``: the step's transform of a linear combination of iterates."""

    terms: tuple['Term', ...]

    def __str__(self) -> str:
        return f'T({format_terms(self.terms)})'


@dataclass(frozen=True)
class HistorySum:
    """``sum_j x[j]`` or ``sum_j T(x[j])`` over every iterate so far; the term's coefficient may read ``a[j]``."""

    index: str
    stream: str
    transformed: bool = False

    def __str__(self) -> str:
        read = f'{self.stream}[{self.index}]'
        return f'T({read})' if self.transformed else read


@dataclass(frozen=True)
class DataGradient:
    """``G(c1*x[k] + ...)``: the gradient of a reconstruction's data term at a linear combination of iterates,
    ``(1/L) A^T (A z - y)``, read through the measurements and the physics the stage is given
    (``optnets.recon``); outside a reconstruction a stage with ``G`` has no data to read."""

    terms: tuple['Term', ...]

    def __str__(self) -> str:
        return f'G({format_terms(self.terms)})'


Value = Union[Iterate, Transform, HistorySum, DataGradient]


@dataclass(frozen=True)
class Term:
    coeff: Coeff
    value: Value

    def __str__(self) -> str:
        return format_terms((self,))


def format_terms(terms: tuple[Term, ...]) -> str:
    parts = []
    for i, term in enumerate(terms):
        negative = is_negative(term.coeff)
        coeff = mul(Num(-1.0), term.coeff) if negative else term.coeff
        body = str(term.value) if coeff == ONE else f'{_wrap(coeff, 2, strict=False)}*{term.value}'
        if isinstance(term.value, HistorySum):
            body = f'sum_{term.value.index} {body}'
        sign = ('-' if i == 0 else ' - ') if negative else ('' if i == 0 else ' + ')
        parts.append(sign + body)
    return ''.join(parts)


# ---------------------------------------------------------------------------------------------------------------
# one stream's update (a Rule, in rule.py, holds one per stream)


@dataclass(frozen=True)
class Update:
    """``stream[k+1] = terms``."""

    stream: str
    terms: tuple[Term, ...]

    def __str__(self) -> str:
        return f'{self.stream}[k+1] = {format_terms(self.terms)}'
