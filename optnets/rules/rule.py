"""A rule: the updates of its streams (``ir``), and what is not part of its identity: its name, its reading of T
and its named initialisations. ``Rule.parse`` is where rule text enters (``parser``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import Iterator

from .ir import DataGradient, Term, Transform, Update, symbols
from .parser import parse

READINGS = {
    'step': "T is the algorithm's whole step G(x) = prox(x - alpha*grad f(x))",
    'increment': "T is the increment G(x) - x of the algorithm's step G (so x + T(x) is one step of it)",
    'prox': "T is the proximal map of the prior; the data term's gradient is written out, G(x) = (1/L) A^T(Ax - y)",
}


@dataclass(frozen=True)
class Rule:
    """An update rule: one update per stream, plus what is not part of its identity: a name, its ``reading``
    of T (a key of ``READINGS``, or '' when unstated) and its named initialisations.

    ``inits`` maps an initialisation name (``"special"``, ``"theory"``) to ``{symbol: value or schedule}``;
    a schedule is a callable ``(step, j) -> float`` (``j`` is the history index for ``a[j]``, else ``None``).
    """

    updates: tuple[Update, ...]
    name: str = field(default='', compare=False)
    inits: dict = field(default_factory=dict, compare=False, hash=False)
    reading: str = field(default='', compare=False)

    def __post_init__(self):
        if self.reading and self.reading not in READINGS:
            raise ValueError(f'reading must be one of {sorted(READINGS)} or empty, got {self.reading!r}')

    @classmethod
    def parse(cls, text: str, name: str = '', reading: str = '', **inits) -> 'Rule':
        return cls(parse(text), name=name, inits=inits, reading=reading)

    def with_inits(self, **inits) -> 'Rule':
        return Rule(self.updates, name=self.name, inits={**self.inits, **inits}, reading=self.reading)

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(update.stream for update in self.updates)

    @property
    def symbols(self) -> dict[str, bool]:
        """Every coefficient symbol, mapped to whether it is indexed (``a[j]``), in order of appearance."""
        found: dict[str, bool] = {}
        for term in walk_terms(self):
            for sym in sorted(symbols(term.coeff), key=str):
                found.setdefault(sym.name, sym.index is not None)
        return found

    def __str__(self) -> str:
        return '\n'.join(str(update) for update in self.updates)

    def __repr__(self) -> str:
        return f'Rule.parse({str(self)!r})'


def walk_terms(rule: Rule) -> Iterator[Term]:
    """Every term of a rule, those inside ``T(...)`` and ``G(...)`` included."""
    for update in rule.updates:
        yield from _walk(update.terms)


def _walk(terms: tuple[Term, ...]) -> Iterator[Term]:
    for term in terms:
        yield term
        if isinstance(term.value, (Transform, DataGradient)):
            yield from _walk(term.value.terms)
