"""Rule -> Plan: history analysis, coefficient placement and fusion decisions, as printable plain data (what a
stage of some number of steps then runs and keeps is its ``Program``, ``lower.py``).

A plan knows nothing of torch. It says, per stream, which iterates a step must keep (a window of the latest
ones, or the whole history), which history sums run as accumulators (or as one running difference, where two
streams' sums are only read as ``c*(S_a - S_b)``), which coefficients exist with their
initial values, and which transform calls fuse into one convolution over a concatenation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..rules.errors import RuleError
from ..rules.ir import BinOp, Coeff, DataGradient, HistorySum, Iterate, Num, Term, Transform, symbols
from ..rules.rule import READINGS, Rule, walk_terms
from ..rules.semantics import coefficient_value, evaluate, output


@dataclass(frozen=True)
class Coefficient:
    """A coefficient symbol of the rule: ``indexed`` ones (``a[j]``) have one value per history entry."""

    name: str
    indexed: bool
    inits: dict  # init name -> value or schedule (step, j) -> float

    def value(self, init: str, step: int, j: int | None = None) -> float:
        spec = self.inits.get(init, 0.0)
        return float(spec(step, j)) if callable(spec) else float(spec)

    def __str__(self) -> str:
        name = f'{self.name}[j]' if self.indexed else self.name
        where = 'one per step and history entry' if self.indexed else 'one per step'
        inits = ', '.join(f'{k}: {v}' for k, v in self.inits.items())
        return f'{name:8} {where}; {inits or "initial value 0"}'


@dataclass(frozen=True)
class IdentityPath:
    """Where the stage input goes when every T is zero (as a zero-initialised last BN starts it): the gain of the
    stage output over ``steps`` steps of the rule's plain terms, at one initialisation."""

    init: str
    steps: int
    gain: float  # |output| / |input|; the concatenated history of a dense stage always carries its input
    dense: bool = False

    @property
    def rate(self) -> float:
        return self.gain ** (1 / self.steps)

    @property
    def alive(self) -> bool:
        return self.dense or self.gain > 1e-6

    def __str__(self) -> str:
        if self.dense:
            return f'{self.init}: preserved (the concatenated history carries the input)'
        if not self.alive:
            return (
                f'{self.init}: dies (0 after {self.steps} steps): T must carry the signal, so it is not '
                'zero-initialised'
            )
        verdict = (
            'preserved'
            if abs(self.rate - 1) < 0.01
            else f'{"decays" if self.rate < 1 else "grows"} like {self.rate:.2f}^k'
        )
        return f'{self.init}: {verdict} (gain {self.gain:.3g} after {self.steps} steps)'


@dataclass(frozen=True)
class StreamPlan:
    stream: str
    terms: tuple[Term, ...]
    window: int  # how many of the latest iterates a step keeps: x[k], x[k-1], ..., x[k-window+1]
    whole_history: bool  # kept in full because a sum reads every iterate with its own coefficient or T
    accumulator: bool  # sum_j c*x[j] with one shared c: a running sum replaces the history
    fused: bool  # sum_j a[j]*T(x[j]) runs as one conv over the concatenated history

    @property
    def applies_t(self) -> bool:
        """Whether its update calls T: only such a stream gets a T a step (ADMM-Net's x reads G alone)."""
        return any(_calls_t(t) for t in self.terms)


@dataclass(frozen=True)
class Plan:
    rule: Rule
    streams: tuple[StreamPlan, ...]
    coefficients: tuple[Coefficient, ...]
    linear_head: bool = True
    difference: tuple[str, str] | None = None  # (a, b): D = sum_j (a[j] - b[j]) replaces the sums of a and b

    @property
    def stream_names(self) -> tuple[str, ...]:
        return tuple(s.stream for s in self.streams)

    def stream(self, name: str) -> StreamPlan:
        return next(s for s in self.streams if s.stream == name)

    @property
    def dense(self) -> bool:
        """Whether a step reads transforms of the whole history (the DenseNet form)."""
        return any(is_transform_sum(t) for s in self.streams for t in s.terms)

    def identity_path(self, init: str, steps: int = 16, relu: bool = False) -> IdentityPath:
        """The stage input's path with T = 0 at ``init``'s coefficients (the reference semantics, on numbers),
        with a ReLU after each step if ``relu`` (the residual families' post-activation)."""
        if self.dense:
            return IdentityPath(init, steps, 1.0, dense=True)
        values = {c.name: c for c in self.coefficients}
        value = lambda name, k, j: values[name].value(init, k, j)  # noqa: E731
        try:
            history = evaluate(
                self.rule,
                1.0,
                steps,
                lambda k, s, j: lambda v: 0.0,
                value,
                (lambda v: max(v, 0.0)) if relu else None,
                gradient=lambda v: 0.0,  # no data: the input's own path
            )
        except ZeroDivisionError:
            raise self._division_by_zero(init, steps, value) from None
        return IdentityPath(init, steps, abs(output(self.rule, history)))

    def _division_by_zero(self, init: str, steps: int, value) -> RuleError:
        """The positioned error for a coefficient that divides by zero at ``init``'s values."""
        for term in walk_terms(self.rule):
            for step in range(steps):
                for j in range(step + 1):
                    try:
                        coefficient_value(term.coeff, lambda name, i: value(name, step, i), j)  # noqa: B023
                    except ZeroDivisionError:
                        return RuleError.in_rule(
                            self.rule,
                            f'{term.coeff} divides by zero at step {step} with coeff_init={init!r} (a '
                            'coefficient without an initial value starts at 0): give its divisor a nonzero initial '
                            'value',
                            str(term.coeff),
                        )
        raise AssertionError('a division by zero that no coefficient makes')

    def __str__(self) -> str:
        calling = [s.stream for s in self.streams if s.applies_t]
        transforms = (
            'one transform T per step and stream'
            if len(calling) == len(self.streams)
            else f'one transform T per step in {", ".join(calling)} (the others call none)'
            if calling
            else 'no transform T'
        )
        lines = [
            f'Plan for rule {self.rule.name or "(unnamed)"}: {len(self.streams)} stream(s) '
            f'{", ".join(self.stream_names)}, {transforms}'
        ]
        lines.extend(f'  {update}' for update in self.rule.updates)
        if self.rule.reading:
            lines.append(f'  reading: {READINGS[self.rule.reading]}')
        lines.append('  identity path (every T = 0):')
        for init in self.rule.inits or ('zero',):
            try:
                linear, relu = self.identity_path(init), self.identity_path(init, relu=True)
            except RuleError as error:
                lines.append(f'    {init}: undefined: {error.message}')
                continue
            verdict = str(relu).split(': ', 1)[1]
            after = '' if str(linear) == str(relu) else f'; with a ReLU after each step: {verdict}'
            lines.append(f'    {linear}{after}')
        lines.append('  coefficients:' if self.coefficients else '  coefficients: none')
        lines.extend(f'    {c}' for c in self.coefficients)
        fused = [s for s in self.streams if s.fused]
        lines.append('  fused transform calls:' if fused else '  fused transform calls: none')
        for s in fused:
            term = next(t for t in s.terms if is_transform_sum(t))
            coeff = str(term.coeff)
            lines.append(
                f'    {s.stream}: sum_j {coeff}*T(x[j]) = tail(conv(concat_j({coeff} * P(x[j])))) '
                f'with P the per-channel head of T; {coeff} folds into the conv weight slices'
            )
        return '\n'.join(lines)


def compile_rule(rule: Rule, linear_head: bool = True) -> Plan:
    """Analyse ``rule`` into a ``Plan``.

    ``linear_head`` says whether the transforms start with per-channel ops followed by a linear conv, which
    lets ``sum_j a[j]*T(x[j])`` run as one conv over the concatenated history.
    """
    if isinstance(rule, str):
        rule = Rule.parse(rule)
    reads = [t for t in walk_terms(rule)]
    streams = []
    for update in rule.updates:
        name = update.stream
        lags = [t.value.lag for t in reads if isinstance(t.value, Iterate) and t.value.stream == name]
        sums = [t for t in reads if isinstance(t.value, HistorySum) and t.value.stream == name]
        indexed_or_transformed = [t for t in sums if t.value.transformed or has_indexed_coeff(t)]
        own_sums = [t for t in update.terms if is_transform_sum(t)]
        streams.append(
            StreamPlan(
                stream=name,
                terms=update.terms,
                window=max([0, *lags]) + 1,
                whole_history=bool(indexed_or_transformed),
                accumulator=len(sums) > len(indexed_or_transformed),
                fused=bool(own_sums) and linear_head,
            )
        )
    coefficients = tuple(
        Coefficient(name, indexed, {init: values[name] for init, values in rule.inits.items() if name in values})
        for name, indexed in rule.symbols.items()
    )
    difference = running_difference(rule)
    if difference:
        streams = [replace(s, accumulator=False) if s.stream in difference else s for s in streams]
    plan = Plan(rule, tuple(streams), coefficients, linear_head, difference)
    _check_compilable(plan)
    return plan


def running_difference(rule: Rule) -> tuple[str, str] | None:
    """``(a, b)`` when the plain sums ``sum_j a[j]`` and ``sum_j b[j]`` are read only in pairs ``c*sum_j a[j] -
    c*sum_j b[j]`` (as ADMM's dual ``sum_t (y[t] - x[t])``), in every linear combination that reads a sum (an
    update's, or a ``G(...)``'s): then one running difference replaces both sums."""
    reads = []  # per combination with plain sums: {stream: coefficient}
    for terms in _combinations(rule):
        sums = [t for t in terms if isinstance(t.value, HistorySum)]  # T(sum_j ...) does not parse
        if any(t.value.transformed or has_indexed_coeff(t) for t in sums):
            return None
        if sums:
            streams = [t.value.stream for t in sums]
            if len(streams) != len(set(streams)):
                return None
            reads.append({t.value.stream: t.coeff for t in sums})
    if not reads or any(len(r) != 2 or set(r) != set(reads[0]) for r in reads):
        return None
    a, b = reads[0]
    return (a, b) if all(_negated(r[a], r[b]) for r in reads) else None


def _combinations(rule: Rule) -> list[tuple[Term, ...]]:
    """Every linear combination of a rule: each update's terms, and those inside its ``T(...)`` and ``G(...)``."""
    found = [update.terms for update in rule.updates]
    found += [t.value.terms for t in walk_terms(rule) if isinstance(t.value, (Transform, DataGradient))]
    return found


def _negated(a: Coeff, b: Coeff) -> bool:
    """Whether ``b`` is ``-a`` as the parser writes it (``-1 * a``, or the negated number), or ``a`` is ``-b``."""
    if isinstance(a, Num) and isinstance(b, Num):
        return a.value == -b.value
    minus = lambda c, d: isinstance(d, BinOp) and d.op == '*' and d.left == Num(-1.0) and d.right == c  # noqa: E731
    return minus(a, b) or minus(b, a)


def _check_compilable(plan: Plan):
    """Refuse, with the position, the rules whose stages the compiler cannot build."""
    rule = plan.rule
    if plan.dense and len(plan.streams) > 1:
        raise RuleError.in_rule(
            rule,
            'a rule that sums T over the history (a dense stage, whose output is the '
            'concatenated history) has one stream',
            stream=plan.streams[1].stream,
        )
    for stream in plan.streams:
        if stream.fused:
            transform = next((t for t in stream.terms if isinstance(t.value, Transform)), None)
            if transform is not None:
                raise RuleError.in_rule(
                    rule,
                    'T(...) beside sum_j a[j]*T(x[j]): with linear-head fusion the '
                    "step's T runs once, over the whole history",
                    str(transform.value),
                    stream.stream,
                )


def is_transform_sum(term: Term) -> bool:
    """Whether a term is a sum of transforms, ``sum_j a[j]*T(x[j])`` (a dense stage's)."""
    return isinstance(term.value, HistorySum) and term.value.transformed


def _calls_t(term: Term) -> bool:
    """Whether a term applies T: ``T(...)`` or a sum of transforms (``G(...)`` holds neither)."""
    return isinstance(term.value, Transform) or is_transform_sum(term)


def has_indexed_coeff(term: Term) -> bool:
    """Whether a term's coefficient reads an indexed symbol (``a[j]``: one value per history term)."""
    return any(sym.index is not None for sym in symbols(term.coeff))
