"""Text -> rule IR: a tokenizer and a recursive-descent parser that linearises as it goes.

Grammar (one assignment per stream, separated by newlines or ``;``, ``#`` starts a comment)::

    update  := NAME '[' 'k' '+' '1' ']' '=' expr
    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary)*
    unary   := ('-' | '+') unary | 'sum_' NAME term | primary
    primary := NUMBER | NAME | NAME '[' index ']' | 'T' '(' expr ')' | 'G' '(' expr ')' | '(' expr ')'
    index   := 'k' (('+' | '-') INT)? | NAME     (k+1: the new iterate of a stream assigned earlier)

Every sub-expression is either a coefficient (no iterate in it) or a linear form in the iterates; products of
two linear forms, constants added to them and the like are rejected with the position of the offending term.
Numbers fold as they are read (``1 - 1`` is ``0``), so a division by zero or a number out of range is refused
where it is written. Limits, each refused with its position: nesting depth ``MAX_NESTING``, window ``MAX_LAG``,
terms per update ``MAX_TERMS``, operators per coefficient ``MAX_COEFF_OPS``, streams ``MAX_STREAMS``, length
``MAX_CHARS``. Coefficient
names may not be Python keywords or start with ``_``; ``T`` and ``k`` are reserved.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass

from .errors import RuleError
from .ir import (
    Coeff,
    DataGradient,
    HistorySum,
    Iterate,
    Num,
    ONE,
    Sym,
    Term,
    Transform,
    Update,
    add,
    div,
    is_identically_zero,
    mul,
    numbers,
    size,
    sub,
)

MAX_NESTING = 32
"""Brackets, ``T(...)``, ``sum_j`` and unary signs nested deeper than this are refused."""
MAX_LAG = 64
"""The oldest window read: ``x[k-64]``."""
MAX_TERMS = 64
"""Terms of one update (or of one ``T(...)``) after the rule is multiplied out."""
MAX_COEFF_OPS = 32
"""Operators in one coefficient expression."""
MAX_STREAMS = 32
"""Streams of one rule."""
MAX_CHARS = 10_000
"""Characters of a rule's text: a longer one is refused before it is read."""


_TOKEN = re.compile(
    r'(?P<space>[ \t\r]+|#[^\n]*)|(?P<number>\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)'
    r'|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/()\[\]=;\n])'
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, name, op, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise RuleError(f'unexpected character {text[pos]!r}', text, pos)
        if match.lastgroup != 'space':
            kind = 'sep' if match.group() in ';\n' else match.lastgroup
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token('end', '', len(text)))
    return tokens


@dataclass
class _Coeff:
    expr: Coeff
    pos: int


@dataclass
class _Linear:
    terms: list[Term]
    pos: int


def _plain(value) -> bool:
    """Whether ``G(...)`` may read a value: an iterate, or a plain history sum ``sum_j c*x[j]``."""
    return isinstance(value, Iterate) or (isinstance(value, HistorySum) and not value.transformed)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.streams = self._stream_names()
        self.index: str | None = None  # the bound history index inside sum_j
        self.in_transform = False
        self.in_gradient = False
        self.depth = 0  # unary calls on the stack: how deeply the expression nests
        self.current: str | None = None  # the stream whose update is being read
        self.updated: set[str] = set()  # streams assigned so far: their x[k+1] may be read (Gauss-Seidel)
        self.symbol_kinds: dict[str, tuple[bool, int]] = {}  # name -> (indexed, first position)

    # -- token helpers ------------------------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, pos: int | None = None):
        raise RuleError(message, self.text, self.tok.pos if pos is None else pos)

    def expect(self, text: str, what: str | None = None) -> Token:
        if self.tok.text != text or self.tok.kind == 'end':
            found = (
                'the end of the rule'
                if self.tok.kind == 'end'
                else 'a line break'
                if self.tok.text == '\n'
                else repr(self.tok.text)
            )
            self.error(f'expected {what or repr(text)}, found {found}')
        self.i += 1
        return self.tokens[self.i - 1]

    def _stream_names(self) -> dict[str, int]:
        """First pass: the streams are the names on the left of each statement."""
        names, start = {}, True
        for tok in self.tokens:
            if start and tok.kind == 'name':
                if tok.text in names:
                    raise RuleError(f'stream {tok.text!r} is assigned twice', self.text, tok.pos)
                if len(names) == MAX_STREAMS:
                    raise RuleError(
                        f'more than {MAX_STREAMS} streams: a rule has at most {MAX_STREAMS}', self.text, tok.pos
                    )
                names[tok.text] = tok.pos
            start = tok.kind == 'sep'
        return names

    # -- statements ---------------------------------------------------------------------------------------------
    def rule(self) -> tuple[Update, ...]:
        updates = []
        while self.tok.kind != 'end':
            if self.tok.kind == 'sep':
                self.i += 1
                continue
            updates.append(self.update())
            if self.tok.kind not in ('sep', 'end'):
                self.error(f'expected an operator or the end of the update, found {self.tok.text!r}')
        if not updates:
            self.error('expected an update such as x[k+1] = T(x[k]), found an empty rule')
        return tuple(updates)

    def update(self) -> Update:
        name = self.tok
        if name.kind != 'name' or name.text in ('T', 'G', 'k') or name.text.startswith('sum_'):
            self.error('expected a stream name such as x in x[k+1] = ...')
        self.i += 1
        self.expect('[')
        self.expect('k', "the new iterate's index k+1")
        self.expect('+', "'+1' (the left side is the new iterate x[k+1])")
        if self.tok.text != '1':
            self.error("expected '1' (the left side is the new iterate x[k+1])")
        self.i += 1
        self.expect(']')
        self.expect('=')
        self.current = name.text
        value = self.expr()
        if isinstance(value, _Coeff):
            self.error('the right side must read at least one iterate, such as x[k]', value.pos)
        self.updated.add(name.text)
        return Update(name.text, tuple(value.terms))

    # -- expressions --------------------------------------------------------------------------------------------
    def expr(self):
        left = self.term()
        while self.tok.text in ('+', '-'):
            op = self.tok
            self.i += 1
            right = self.term()
            left = self.combine_sum(left, right, op)
        return left

    def combine_sum(self, left, right, op: Token):
        if isinstance(left, _Coeff) and isinstance(right, _Coeff):
            return self.coefficient((add if op.text == '+' else sub)(left.expr, right.expr), left.pos, op.pos)
        if isinstance(left, _Coeff) or isinstance(right, _Coeff):
            constant = left if isinstance(left, _Coeff) else right
            self.error(
                'a term without an iterate is not linear in the iterates: multiply it by an iterate or T(...)',
                constant.pos,
            )
        if op.text == '-':
            right = _Linear([Term(mul(Num(-1.0), t.coeff), t.value) for t in right.terms], right.pos)
        return self.linear(left.terms + right.terms, left.pos, op.pos)

    def coefficient(self, expr: Coeff, pos: int, op_pos: int) -> _Coeff:
        """A folded coefficient, checked against the limits where its operator stands."""
        if not all(math.isfinite(value) for value in numbers(expr)):
            self.error('a number out of range: folding the numbers here leaves what a float holds', op_pos)
        if size(expr) > MAX_COEFF_OPS:
            self.error(f'a coefficient with more than {MAX_COEFF_OPS} operators: simplify it', op_pos)
        return _Coeff(expr, pos)

    def linear(self, terms: list[Term], pos: int, op_pos: int) -> _Linear:
        if len(terms) > MAX_TERMS:
            self.error(f'more than {MAX_TERMS} terms: split the rule or simplify it', op_pos)
        for term in terms:
            self.coefficient(term.coeff, pos, op_pos)
        return _Linear(terms, pos)

    def term(self):
        left = self.unary()
        while self.tok.text in ('*', '/'):
            op = self.tok
            self.i += 1
            right = self.unary()
            left = self.combine_product(left, right, op)
        return left

    def combine_product(self, left, right, op: Token):
        if op.text == '/' and isinstance(right, _Coeff) and is_identically_zero(right.expr):
            self.error(
                'division by zero' + ('' if right.expr == Num(0.0) else f': {right.expr} is 0 for every value'), op.pos
            )
        if isinstance(left, _Coeff) and isinstance(right, _Coeff):
            value = mul(left.expr, right.expr) if op.text == '*' else div(left.expr, right.expr)
            return self.coefficient(value, left.pos, op.pos)
        if isinstance(right, _Linear) and op.text == '/':
            self.error('cannot divide by an iterate: the rule must be linear in the iterates', right.pos)
        if isinstance(left, _Linear) and isinstance(right, _Linear):
            self.error('a product of two iterates is not linear in the iterates', right.pos)
        linear, coeff = (left, right) if isinstance(left, _Linear) else (right, left)
        scale = (lambda c: div(c, coeff.expr)) if op.text == '/' else (lambda c: mul(coeff.expr, c))
        return self.linear([Term(scale(t.coeff), t.value) for t in linear.terms], left.pos, op.pos)

    def unary(self):
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                self.error(f'nested deeper than {MAX_NESTING} levels (brackets, T, sum_j, signs): simplify the rule')
            return self.signed()
        finally:
            self.depth -= 1

    def signed(self):
        tok = self.tok
        if tok.text in ('-', '+'):
            self.i += 1
            operand = self.unary()
            if tok.text == '+':
                return operand
            return self.combine_product(_Coeff(Num(-1.0), tok.pos), operand, Token('op', '*', tok.pos))
        if tok.kind == 'name' and tok.text.startswith('sum_'):
            return self.history_sum()
        return self.primary()

    def history_sum(self):
        tok = self.tok
        index = tok.text[len('sum_') :]
        if not index.isidentifier() or index in ('k', 'T') or index in self.streams:
            self.error(f'expected a history index such as sum_j, found {tok.text!r}')
        if self.index is not None:
            self.error('nested history sums are not supported')
        if self.in_transform and not self.in_gradient:  # G(...) inside T reads sums as a G of its own does
            self.error('T(sum_j ...) is not supported: write sum_j a[j]*T(x[j]) for a sum of transforms')
        self.i += 1
        self.index = index
        body = self.term()
        self.index = None
        if isinstance(body, _Coeff):
            self.error(f'the body of sum_{index} must read {index}-th iterates such as x[{index}]', body.pos)
        terms = []
        for term in body.terms:
            if not isinstance(term.value, HistorySum):
                self.error(
                    f'sum_{index} reads {term.value}; its body may read only x[{index}] and T(x[{index}])', body.pos
                )
            terms.append(term)
        return _Linear(terms, tok.pos)

    def primary(self):
        tok = self.tok
        if tok.kind == 'number':
            self.i += 1
            return self.coefficient(Num(float(tok.text)), tok.pos, tok.pos)
        if tok.text == '(':
            self.i += 1
            inner = self.expr()
            self.expect(')', "')' to close '('")
            return inner
        if tok.text == 'T':
            return self.transform()
        if tok.text == 'G' and self.tokens[self.i + 1].text == '(':
            return self.gradient()
        if tok.kind == 'name':
            self.i += 1
            if self.tok.text == '[':
                return self.indexed(tok)
            return _Coeff(self.symbol(tok, None), tok.pos)
        found = 'the end of the rule' if tok.kind == 'end' else 'a line break' if tok.text == '\n' else repr(tok.text)
        self.error(f'expected a number, a coefficient, an iterate such as x[k], T(...) or sum_j, found {found}')

    def transform(self):
        tok = self.tok
        self.i += 1
        self.expect('(', "'(' after T")
        if self.in_transform:
            self.error('T(T(...)) is not supported: one transform per term', tok.pos)
        self.in_transform = True
        inner = self.expr()
        self.in_transform = False
        self.expect(')', "')' to close T(")
        if isinstance(inner, _Coeff):
            self.error('T(...) must be applied to iterates such as x[k]', inner.pos)
        history = [t for t in inner.terms if isinstance(t.value, HistorySum)]
        if history:
            if len(inner.terms) != 1 or inner.terms[0].coeff != ONE:
                self.error(
                    f'inside a history sum, T may read only one iterate: T({history[0].value.stream}'
                    f'[{history[0].value.index}])',
                    inner.pos,
                )
            read = history[0].value
            return _Linear([Term(ONE, HistorySum(read.index, read.stream, transformed=True))], tok.pos)
        return _Linear([Term(ONE, Transform(tuple(inner.terms)))], tok.pos)

    def gradient(self):
        """``G(...)``: the data term's gradient at a linear combination of iterates and their history sums (no T
        inside: ``G(z[k] - sum_t (x[t] - z[t]))`` is ADMM's data step at ``z - u``, the dual ``u`` a running sum)."""
        tok = self.tok
        self.i += 1
        self.expect('(', "'(' after G")
        if self.in_gradient:
            self.error('G(G(...)) is not supported: one data gradient per term', tok.pos)
        self.in_gradient = True
        inner = self.expr()
        self.in_gradient = False
        self.expect(')', "')' to close G(")
        if isinstance(inner, _Coeff):
            self.error('G(...) must be applied to iterates such as x[k]', inner.pos)
        inside = next((t for t in inner.terms if not _plain(t.value)), None)
        if inside is not None:
            self.error(f'G(...) reads iterates such as x[k] and sums such as sum_j x[j], not {inside.value}', inner.pos)
        return _Linear([Term(ONE, DataGradient(tuple(inner.terms)))], tok.pos)

    def indexed(self, name: Token):
        self.expect('[')
        index = self.tok
        if index.text == 'k':
            self.i += 1
            lag = 0
            if self.tok.text in ('+', '-'):
                sign = self.tok
                self.i += 1
                if self.tok.kind != 'number' or not self.tok.text.isdigit():
                    self.error('expected a whole number of steps, as in x[k-1]')
                digits = self.tok.text.lstrip('0') or '0'
                steps = MAX_LAG + 2 if len(digits) > 6 else int(digits)  # int() refuses 4300 digits
                lag = steps if sign.text == '-' else -steps
                read = f'{name.text}[k{sign.text}{digits if len(digits) <= 6 else digits[:6] + "..."}]'
                if lag > MAX_LAG:
                    self.error(
                        f'{read} reads further back than the window limit, '
                        f'{name.text}[k-{MAX_LAG}]: use a history sum for long memories'
                    )
                self.i += 1
            self.expect(']')
            if name.text not in self.streams:
                self.error(f'undefined stream {name.text!r}: streams are assigned as {name.text}[k+1] = ...', name.pos)
            if lag == -1 and name.text not in self.updated:
                this = 'its own update' if name.text == self.current else f"an update before {name.text}[k+1]'s"
                self.error(
                    f'{name.text}[k+1] is read in {this}: an update may read the new iterate only of a '
                    'stream assigned before it (Gauss-Seidel)',
                    name.pos,
                )
            if lag < -1:
                self.error(
                    f'{read} reads the future: the right side may read only '
                    f'{name.text}[k+1] of earlier streams, {name.text}[k], {name.text}[k-1], ...',
                    name.pos,
                )
            return _Linear([Term(ONE, Iterate(name.text, lag))], name.pos)
        if index.kind != 'name' or index.text == 'T':
            self.error(f'expected an index: k, k-1, ... or a history index such as j, found {index.text!r}')
        self.i += 1
        self.expect(']')
        if index.text != self.index:
            where = 'outside any sum' if self.index is None else f'inside sum_{self.index}'
            self.error(
                f'{name.text}[{index.text}] uses the index {index.text!r} {where}: '
                f'history indices are bound by sum_{index.text}',
                index.pos,
            )
        if name.text in self.streams:
            return _Linear([Term(ONE, HistorySum(index.text, name.text))], name.pos)
        return _Coeff(self.symbol(name, index.text), name.pos)

    def symbol(self, tok: Token, index: str | None) -> Sym:
        if tok.text in self.streams:
            self.error(f'{tok.text!r} is a stream: read it as {tok.text}[k] or {tok.text}[k-1]', tok.pos)
        if tok.text in ('k', 'T', 'G') or keyword.iskeyword(tok.text) or tok.text.startswith('_'):
            self.error(
                f'{tok.text!r} is reserved and cannot be a coefficient: T, G, k, Python keywords and names '
                "starting with '_' are",
                tok.pos,
            )
        indexed = index is not None
        seen = self.symbol_kinds.setdefault(tok.text, (indexed, tok.pos))
        if seen[0] != indexed:
            first, now = ('indexed', 'a scalar') if seen[0] else ('a scalar', 'indexed')
            self.error(f'coefficient {tok.text!r} is used with two meanings: {first} first, {now} here', tok.pos)
        return Sym(tok.text, index)


def parse(text: str) -> tuple[Update, ...]:
    """Parse rule text into updates; raises ``RuleError`` for any bad input."""
    if not isinstance(text, str):
        raise RuleError(f'a rule is text, not {type(text).__name__}')
    if len(text) > MAX_CHARS:
        raise RuleError(f'a rule of {len(text)} characters: at most {MAX_CHARS}', text[: MAX_CHARS + 1], MAX_CHARS)
    return _Parser(text).rule()
