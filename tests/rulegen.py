"""Generated rules over the whole grammar, and the check of a compiled stage against the reference semantics.

Shared by tests/test_semantics.py (a fixed number of seeded examples in CI) and benchmarks/rule_fuzz.py (many
more). A case is a rule text plus stage settings; :func:`check` compiles it and returns its mismatches against
:func:`optnets.rules.evaluate`: outputs, gradients with respect to the input and every coefficient, the output
after ``fuse()``, and the text round trip.
"""

from __future__ import annotations

import copy
import functools
import random
from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

from optnets import Rule, RuleError, compile_stage
from optnets.blocks import BasicTransform, DenseLayer
from optnets.rules.ir import numbers
from optnets.rules.rule import walk_terms
from optnets.rules.semantics import evaluate, output

from tests.helpers import randomise_norms

NUMBERS = ['0', '1', '2', '0.5', '1.5', '3', '0.25']
SCALARS = ['c', 'd']  # any value, 0 and 1 included when fixed
DIVISORS = ['g', '2', '0.5', '(1 + g)']  # never zero
INDEXED = ['a[j]', 'b[j]']
STREAMS = ['x', 'y', 'z', 'S', 'new', 'S_', '_0', 'h_x', 'x_0', 'x_new', 'c_x', 'self', 'torch']
"""Stream names, among them ones whose generated variables would collide without a namespace (``S`` and ``new``
both want ``S_new``, ``x``'s history is ``h_x``, ...)."""


EXTREME = ['1e300', '1e308', '1e-300', '5e-324']
"""Numbers whose products and quotients leave the finite range: the parser refuses those, with the position."""


def coefficient_text(indexed: bool, extreme: bool = False):
    """A coefficient expression: numbers, names, + - * /, unary minus; indexed names inside sums only."""
    leaves = st.sampled_from(NUMBERS + SCALARS + (INDEXED if indexed else []) + (EXTREME if extreme else []))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(lambda a, b: f'({a} + {b})', inner, inner),
            st.builds(lambda a, b: f'({a} - {b})', inner, inner),
            st.builds(lambda a, b: f'{a}*{b}', inner, inner),
            st.builds(lambda a, d: f'{a}/{d}', inner, st.sampled_from(DIVISORS)),
            st.builds(lambda a: f'-{a}', inner),
            st.builds(lambda a: f'-({a})', inner),  # a product or quotient under unary minus
        ),
        max_leaves=4,
    )


def iterate_text(streams, updated=()):
    """A window read; ``updated`` streams (assigned earlier in the rule) may also be read at k+1."""
    window = st.builds(
        lambda s, lag: f'{s}[k]' if lag == 0 else f'{s}[k-{lag}]', st.sampled_from(streams), st.integers(0, 3)
    )
    return st.one_of(window, st.builds(lambda s: f'{s}[k+1]', st.sampled_from(updated))) if updated else window


def read_texts(streams, updated=(), extreme: bool = False):
    """Scaled reads: an iterate (``updated`` streams also at k+1), a plain sum, and ADMM's dual pair of sums (read
    in pairs everywhere, the sums run as one running difference)."""
    coeff = coefficient_text(False, extreme)
    iterate = st.builds(lambda c, v: f'{c}*{v}', coeff, iterate_text(streams, updated))
    plain_sum = st.builds(lambda c, s: f'sum_j {c}*{s}[j]', coefficient_text(True, extreme), st.sampled_from(streams))
    dual = st.builds(lambda c: f'{c}*sum_t ({streams[0]}[t] - {streams[-1]}[t])', coeff)
    return iterate, plain_sum, dual


def gradient_text(streams, updated=(), extreme: bool = False):
    """``G(...)`` of one or two scaled reads."""
    iterate, plain_sum, dual = read_texts(streams, updated, extreme)
    parts = st.lists(st.one_of(iterate, iterate, plain_sum, dual), min_size=1, max_size=2)
    return st.builds(lambda parts: f'G({" + ".join(parts)})', parts)


def term_text(streams, owner: str, kind: str, extreme: bool = False, common=()):
    """One term of ``owner``'s update. kind: 'residual' (iterates, bare or scaled, T, plain sums, ADMM's dual pair
    of sums, the data gradient G of iterates and sums, inside T too, or one of the ``common`` G's that other
    updates may read as well), 'dense' (one stream, fused transform sum and plain sums), 'dense_unfused' (the same
    with T applied to each entry, plus T(...))."""
    coeff = coefficient_text(False, extreme)
    updated = streams[: streams.index(owner)]
    iterate, plain_sum, dual = read_texts(streams, updated, extreme)
    gradient = st.builds(lambda c, g: f'{c}*{g}', coeff, gradient_text(streams, updated, extreme))
    repeated = [st.builds(lambda c, g: f'{c}*{g}', coeff, st.sampled_from(common))] if common else []
    inside = st.one_of(iterate, iterate, gradient, *repeated) if kind == 'residual' else iterate
    transform = st.builds(
        lambda c, parts: f'{c}*T({" + ".join(parts)})', coeff, st.lists(inside, min_size=1, max_size=3)
    )
    if kind == 'residual':  # a bare iterate too: an update that names a tensor the forward still reads
        return st.one_of(iterate, transform, plain_sum, dual, gradient, *repeated, iterate_text(streams, updated))
    if kind == 'dense':
        return plain_sum
    return st.one_of(iterate, transform, plain_sum)


WIDTH, IN_WIDTH, SIZE, BATCH = 3, 5, 3, 3


@dataclass
class Case:
    text: str
    kind: str  # residual, dense, dense_unfused
    steps: int
    learn: bool
    shape: str  # scalar, channel
    activation: str  # none, relu, relu_inplace, tanh
    train: bool
    skip_input: bool  # dense: the input has another width
    seed: int
    in_width: int = IN_WIDTH  # with skip_input; a multiple of WIDTH is read as zero-weighted iterates


@st.composite
def cases(draw, extreme: bool = False) -> Case:
    """Cases over the whole grammar; with ``extreme``, half of them draw ``EXTREME`` numbers too (the fuzz run)."""
    extreme = extreme and draw(st.booleans())
    kind = draw(st.sampled_from(['residual', 'residual', 'dense', 'dense_unfused']))
    streams = draw(st.lists(st.sampled_from(STREAMS), min_size=1, max_size=1 if kind != 'residual' else 3, unique=True))
    updates = []
    # G's that several updates may read, computed once a step: one of window iterates and sums, one that may read
    # the first stream's new iterate (for the later updates)
    common = draw(gradient_text(streams, (), extreme)), draw(gradient_text(streams, streams[:1], extreme))
    for owner in streams:
        offered = common if owner != streams[0] else common[:1]
        terms = draw(st.lists(term_text(streams, owner, kind, extreme, offered), min_size=1, max_size=3))
        if kind != 'residual':  # the sum of transforms that makes a stage dense
            terms.insert(
                draw(st.integers(0, len(terms))),
                draw(st.builds(lambda c: f'sum_j {c}*T({owner}[j])', coefficient_text(True))),  # noqa: B023
            )
        updates.append(f'{owner}[k+1] = ' + ' + '.join(terms))
    separator = draw(st.sampled_from(['\n', '; ']))
    return Case(
        text=separator.join(updates),
        kind=kind,
        steps=draw(st.integers(1, 4)),
        learn=draw(st.booleans()),
        shape='scalar' if kind != 'residual' else draw(st.sampled_from(['scalar', 'channel'])),
        activation=draw(st.sampled_from(['none', 'relu', 'relu_inplace', 'tanh'])),
        train=draw(st.booleans()),
        skip_input=kind == 'dense' and draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
        in_width=draw(st.sampled_from([IN_WIDTH, 2 * WIDTH])),
    )


class AffineData:
    """A data term for the generated rules: ``G(z) = W z - y`` with a fixed random 1x1 convolution ``W`` and
    measurements ``y`` (a reconstruction's ``A^T (A z - y)`` is affine in ``z`` too)."""

    def __init__(self, generator: torch.Generator, dtype: torch.dtype):
        self.weight = torch.randn(WIDTH, WIDTH, 1, 1, generator=generator, dtype=dtype) / WIDTH
        self.y = torch.randn(1, WIDTH, 1, 1, generator=generator, dtype=dtype)

    def gradient(self, z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(z, self.weight) - self.y


ACTIVATIONS = {'none': None, 'relu': nn.ReLU, 'relu_inplace': functools.partial(nn.ReLU, inplace=True), 'tanh': nn.Tanh}
"""The stage's activation; the reference applies the same function out of place (``relu`` for ``relu_inplace``)."""


@dataclass(frozen=True)
class Table:
    """Fixed coefficient values as an initial-value schedule ``(step, j) -> float``."""

    values: tuple

    def __call__(self, step, j):
        return self.values[step * (step + 1) // 2 + j if j is not None else step]


def coefficient_values(rule: Rule, steps: int, learn: bool, rng: random.Random) -> dict:
    """Per symbol, a value per stored position; fixed ones hit 0 and 1 often, so that folding is exercised."""
    values = {}
    for name, indexed in rule.symbols.items():
        count = steps * (steps + 1) // 2 if indexed else steps
        if name == 'g':
            values[name] = [rng.uniform(0.5, 2.0) for _ in range(count)]
        else:
            values[name] = [
                rng.choice([0.0, 1.0, -1.0, 0.5, rng.uniform(-1.5, 1.5)]) if not learn else rng.uniform(-1.5, 1.5)
                for _ in range(count)
            ]
    return values


def build(case: Case):
    """The compiled stage of a case, its coefficient lookup for the reference, and its input."""
    rng = random.Random(case.seed)
    torch.manual_seed(case.seed)
    rule = Rule.parse(case.text)
    values = coefficient_values(rule, case.steps, case.learn, rng)
    if not case.learn:
        rule = rule.with_inits(special={name: Table(tuple(v)) for name, v in values.items()})
    dtype = torch.float64
    if case.kind == 'dense':

        def transform(step, stream, widths):
            return DenseLayer(widths, growth=WIDTH, bn_size=rng.choice([None, 2]), dtype=dtype)
    else:

        def transform(step, stream, widths):
            return BasicTransform(WIDTH, WIDTH, dtype=dtype)

    in_width = case.in_width if case.skip_input else WIDTH
    act = ACTIVATIONS[case.activation]
    stage = compile_stage(
        rule,
        case.steps,
        transform,
        WIDTH,
        in_width=in_width,
        learn_coeffs=case.learn,
        coeff_shape=case.shape,
        activation=act() if act else None,
        linear_head=case.kind == 'dense',
        dtype=dtype,
    )
    randomise_norms(stage)
    if case.learn:
        with torch.no_grad():
            for name, param in stage.coeff.named_parameters():
                table = torch.tensor(values[name], dtype=dtype)
                if case.shape == 'channel':  # a different value per channel
                    table = table.view(-1, 1, 1, 1) * torch.empty(param.shape, dtype=dtype).uniform_(0.5, 1.5)
                param.copy_(table.view(param.shape))
    stage.train(case.train)
    x = torch.randn(BATCH, in_width, SIZE, SIZE, dtype=dtype, requires_grad=True)
    data = AffineData(torch.Generator().manual_seed(case.seed), dtype)  # read only by rules with G(...)
    return rule, stage, x, values, data


def run(stage, x: torch.Tensor, data: AffineData) -> torch.Tensor:
    """The stage's output, given the data where its rule reads G(...)."""
    return stage(x, data) if stage.program.reads_data else stage(x)


def reference(rule: Rule, stage, case: Case, x: torch.Tensor, values: dict, data: AffineData):
    def coefficient(name, step, j):
        position = step * (step + 1) // 2 + j if j is not None else step
        if case.learn and hasattr(stage.coeff, name):
            return getattr(stage.coeff, name)[position]
        return values[name][position]

    if case.kind == 'dense':

        def transform(step, stream, j):
            assert j is not None, 'a fused stage has no plain T(...)'
            return lambda v: getattr(stage, f'T_{stream}')[step].head(v, j)

        def tail(step, stream):
            return getattr(stage, f'T_{stream}')[step].tail
    else:

        def transform(step, stream, j):
            return getattr(stage, f'T_{stream}')[step]

        tail = None
    act = ACTIVATIONS[case.activation.removesuffix('_inplace')]
    history = evaluate(
        rule,
        x,
        case.steps,
        transform,
        coefficient,
        act() if act else None,
        tail,
        skip_input=case.skip_input,
        gradient=data.gradient,
    )
    return output(rule, history, lambda tensors: torch.cat(tensors, 1))


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach(), b.detach()
    return torch.allclose(a, b, rtol=1e-7, atol=1e-7 * max(1.0, float(b.abs().max())))


def gradients(out: torch.Tensor, weights: torch.Tensor, inputs: list) -> list:
    """d(sum(weights * out)) / d(inputs); None where an input does not reach the output."""
    if not out.requires_grad:  # e.g. x[k+1] = 0*x[k]
        return [None] * len(inputs)
    return list(torch.autograd.grad((out * weights).sum(), inputs, allow_unused=True))


UNCOMPARED = 'not compared: numbers beyond 1e30 (or a run that overflows float64) make the values ill-conditioned'
"""What :func:`check` returns for a case with extreme numbers: it compiled and ran (before and after ``fuse()``),
but ``c*(a + b)`` and ``c*a + c*b`` with ``c = 1e308`` may differ by more than the values themselves."""


def extreme(rule: Rule) -> bool:
    """Whether a rule holds a number of magnitude beyond 1e30 or below 1e-30 (zero aside)."""
    found = [n for term in walk_terms(rule) for n in numbers(term.coeff)]
    return any(n != 0 and not 1e-30 < abs(n) < 1e30 for n in found)


def check(case: Case) -> list[str]:
    """Every way the compiled stage of ``case`` differs from the reference semantics (empty: none)."""
    problems = []
    try:
        Rule.parse(case.text)
    except RuleError as error:  # extreme numbers: refused where they fold out of range, never elsewhere
        return [] if error.pos is not None and 'out of range' in error.message else [f'RuleError: {error}']
    rule, stage, x, values, data = build(case)
    if Rule.parse(str(rule)) != rule:
        problems.append(f'round trip: {str(rule)!r} re-parses differently')
    if extreme(rule):
        run(stage, x, data)
        with torch.no_grad():
            run(copy.deepcopy(stage).eval().fuse(), x, data)
        return problems or [UNCOMPARED]
    inputs = [x, *stage.coeff.parameters()]
    compiled = run(stage, x, data)
    weights = torch.randn_like(compiled)
    compiled_grads = gradients(compiled, weights, inputs)
    expected = reference(rule, stage, case, x, values, data)
    if not torch.isfinite(expected).all():  # finite numbers whose products overflow float64 at run time
        return [UNCOMPARED]
    if not close(compiled, expected):
        problems.append(f'output differs by {float((compiled - expected).abs().max()):.3g}\n{stage.code}')
        return problems
    expected_grads = gradients(expected, weights, inputs)
    if not all(g is None or torch.isfinite(g).all() for g in expected_grads):
        return [UNCOMPARED]
    names = ['input', *(name for name, _ in stage.coeff.named_parameters())]
    for name, got, want in zip(names, compiled_grads, expected_grads):
        got = torch.zeros_like(x if name == 'input' else getattr(stage.coeff, name)) if got is None else got
        want = torch.zeros_like(got) if want is None else want
        if not close(got, want):
            problems.append(f'gradient of {name} differs by {float((got - want).abs().max()):.3g}')
    if not case.train:
        fused = copy.deepcopy(stage).fuse()
        with torch.no_grad():
            after = run(fused, x, data)
        if not close(after, expected.detach()):
            problems.append(
                f'fuse() changes the output by {float((after - expected.detach()).abs().max()):.3g}\n{fused.code}'
            )
    return problems
