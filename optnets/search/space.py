"""The space of update rules a search explores, as data: every point is a ``Rule`` with its initial values.

One stream (the residual rules, ResNet's skeleton)::

    x[k+1] = g*T(c0*x[k] + ... + c{m-1}*x[k-m+1]) + b0*x[k] + ... + b{m-1}*x[k-m+1] + h*sum_t x[t]

Two streams (y then x, the x update reading y[k] (Jacobi), y[k+1] (Gauss-Seidel) or both), with a dual sum::

    y[k+1] = T(y[k]) + a_yy*y[k] + a_yx*x[k] + a_yd*sum_t (y[t] - x[t])
    x[k+1] = T(x[k]) + a_xx*x[k] + a_xy*y[k] + a_xn*y[k+1] + a_xd*sum_t (y[t] - x[t])

Each coefficient is absent, fixed at a value (a number in the rule's text) or learned (a symbol, whose initial
value is the ``search`` initialisation). Whether each stage's first block keeps ResNet's shortcut is searched too
(``shortcut``; ``gd_net``'s plain CNN has none), and, for a search of accuracy against cost, the skeleton's depth
and a scale of its widths (``depths``, ``width_scales``). The built-in algorithms are named points of the space
(``NAMED``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from .. import rules
from ..compiler import compile_rule
from ..compiler.lower import CallT, New, RunningDifference, lower_fixed, terms
from ..models.presets import skeleton
from ..rules import Rule

if TYPE_CHECKING:
    import optuna

STATES = ('absent', 'fixed', 'learned')
INIT = 'search'  # the initialisation a point's learned coefficients start from: ``coeff_init='search'``


@dataclass(frozen=True)
class Point:
    """A point of the space: the rule (its learned coefficients' initial values as its ``search`` inits), the
    model arguments that keep the skeleton's cost, whether the stages' first blocks keep their shortcut, and the
    Optuna parameters that name it."""

    rule: Rule
    model_kwargs: dict
    params: dict = field(compare=False)
    shortcut: bool = True

    @property
    def text(self) -> str:
        return '; '.join(str(update) for update in self.rule.updates)


def _term(value: float | str, read: str) -> tuple[str, str]:
    """``(sign, text)`` of a coefficient times ``read``: a symbol, or a number (1 is left out)."""
    if isinstance(value, str):
        return '+', f'{value}*{read}'
    sign, size = ('-' if value < 0 else '+'), abs(value)
    return sign, read if size == 1 else f'{size:g}*{read}'


def _sum(terms: list[tuple[str, str]]) -> str:
    text = ''
    for sign, term in terms:
        text += (f' {sign} ' if text else ('-' if sign == '-' else '')) + term
    return text


class RuleSpace:
    """The rules a search draws, on one skeleton: ``preset`` ``'cifar'`` (ResNet-``depth``, 6n+2) or
    ``'imagenet'``. ``window`` is the largest m; ``values`` the range and step of fixed and initial values;
    ``two_streams`` adds the dual-stream rules, at half the steps so that the T count and cost stay the skeleton's;
    ``shortcuts`` the choices for the transitions' shortcut (``(True,)``: ResNet's, never searched).

    ``depths`` and ``width_scales``, when they hold more than one choice, make the skeleton searched too (a search
    of accuracy against cost): the preset's skeleton at each depth, its widths times each scale; ``depth`` and a
    scale of 1 are where the built-ins are enqueued.
    """

    def __init__(
        self,
        preset: str = 'cifar',
        depth: int = 20,
        window: int = 3,
        values: tuple[float, float, float] = (-1.0, 2.0, 0.05),
        history_sums: bool = True,
        two_streams: bool = True,
        coeff_shapes: Sequence[str] = ('scalar', 'channel'),
        shortcuts: Sequence[bool] = (True, False),
        depths: Sequence[int] = (),
        width_scales: Sequence[float] = (1.0,),
    ):
        if not 1 <= window <= 8:
            raise ValueError(f'window must be between 1 and 8, got {window}')
        self.preset, self.depth, self.window, self.values = preset, depth, window, values
        self.history_sums, self.coeff_shapes, self.shortcuts = history_sums, tuple(coeff_shapes), tuple(shortcuts)
        self.skeleton = skeleton(preset, depth)  # the preset's model arguments (a bad preset is refused there)
        self.steps = self.skeleton['steps']
        self.depths, self.width_scales = tuple(depths) or (depth,), tuple(width_scales)
        if depth not in self.depths or 1.0 not in self.width_scales:
            raise ValueError(f'depths must hold depth ({depth}) and width_scales 1, got {depths} and {width_scales}')
        if len(self.width_scales) > 1 and 'widths' not in self.skeleton:
            raise ValueError(f"width_scales need a preset whose skeleton names its widths ('cifar'), not {preset!r}")
        for each in self.depths:
            steps = skeleton(preset, each)['steps']
            if two_streams and any(s % 2 for s in steps):
                raise ValueError(
                    f'two-stream rules take half the steps of the skeleton to keep its cost, and '
                    f'{preset} depth {each} has {steps} steps per stage: pass two_streams=False'
                )
        self.two_streams = two_streams

    def __repr__(self) -> str:
        return (
            f'RuleSpace(preset={self.preset!r}, depth={self.depth}, window={self.window}, values={self.values}, '
            f'history_sums={self.history_sums}, two_streams={self.two_streams}, '
            f'coeff_shapes={self.coeff_shapes}, shortcuts={self.shortcuts}'
            + (f', depths={self.depths}, width_scales={self.width_scales})' if self.searches_skeleton else ')')
        )

    @property
    def searches_skeleton(self) -> bool:
        """Whether the depth or the widths are searched (a search of accuracy against cost)."""
        return len(self.depths) > 1 or len(self.width_scales) > 1

    def named(self, name: str) -> dict:
        """The built-in point ``name`` (``NAMED``) as this space's parameters: at ``depth`` and scale 1 where the
        skeleton is searched."""
        return dict(NAMED[name], depth=self.depth, width=1.0) if self.searches_skeleton else dict(NAMED[name])

    def _skeleton(self, trial) -> dict:
        """The model arguments of the trial's skeleton where it is searched (its steps, widths), else none."""
        if not self.searches_skeleton:
            return {}
        depth = trial.suggest_categorical('depth', self.depths)
        scale = trial.suggest_categorical('width', self.width_scales)
        chosen = skeleton(self.preset, depth)
        found = {'steps': chosen['steps']}
        if 'widths' in chosen:
            found['widths'] = tuple(max(1, round(w * scale)) for w in chosen['widths'])
            found['stem_width'] = max(1, round(chosen['stem_width'] * scale))
        return found

    def suggest(self, trial: optuna.trial.BaseTrial) -> Point:
        """The point an Optuna trial (``trial.suggest_*``) picks; an ``optuna.trial.FixedTrial`` names one."""
        streams = trial.suggest_categorical('streams', (1, 2) if self.two_streams else (1,))
        shape = trial.suggest_categorical('coeff_shape', self.coeff_shapes)
        shortcut = trial.suggest_categorical('shortcut', self.shortcuts)
        inits: dict[str, float] = {}

        def coefficient(name: str, states=STATES) -> float | str | None:
            state = trial.suggest_categorical(name, states)
            if state == 'absent':
                return None
            low, high, step = self.values
            value = round(trial.suggest_float(f'{name}_value', low, high, step=step), 6)
            if state == 'learned':
                inits[name] = value
                return name
            return value or None  # a fixed 0 is an absent term

        model_kwargs = self._skeleton(trial)
        steps = model_kwargs.get('steps', self.steps)
        if streams == 1:
            text = self._one_stream(trial, coefficient)
        else:
            text = self._two_streams(trial, coefficient)
            model_kwargs['steps'] = tuple(s // 2 for s in steps)
        rule = Rule.parse(text, name='searched', reading='increment', **{INIT: inits})
        return Point(rule, dict(model_kwargs, coeff_init=INIT, coeff_shape=shape), dict(trial.params), shortcut)

    def _one_stream(self, trial, coefficient) -> str:
        window = trial.suggest_int('window', 1, self.window)
        reads = ['x[k]'] + [f'x[k-{i}]' for i in range(1, window)]
        inside = [(i, coefficient(f'c{i}', STATES[1:] if i == 0 else STATES)) for i in range(window)]
        inside = _sum([_term(c, reads[i]) for i, c in inside if c is not None]) or 'x[k]'
        scale = coefficient('g')
        outside = [_term(scale, f'T({inside})') if scale is not None else ('+', f'T({inside})')]
        outside += [_term(c, reads[i]) for i in range(window) if (c := coefficient(f'b{i}')) is not None]
        if self.history_sums and (h := coefficient('h')) is not None:
            outside.append(_term(h, 'sum_t x[t]'))
        return f'x[k+1] = {_sum(outside)}'

    def _two_streams(self, trial, coefficient) -> str:
        reads = trial.suggest_categorical('x_reads', ('y[k]', 'y[k+1]', 'both'))
        dual = 'sum_t (y[t] - x[t])'
        y = [('+', 'T(y[k])')] + [
            _term(c, read)
            for name, read in (('a_yy', 'y[k]'), ('a_yx', 'x[k]'), ('a_yd', dual))
            if (c := coefficient(name)) is not None
        ]
        x_terms = (
            [('a_xx', 'x[k]')]
            + [('a_xy', 'y[k]')] * (reads != 'y[k+1]')
            + [('a_xn', 'y[k+1]')] * (reads != 'y[k]')
            + [('a_xd', dual)]
        )
        x = [('+', 'T(x[k])')] + [_term(c, read) for name, read in x_terms if (c := coefficient(name)) is not None]
        return f'y[k+1] = {_sum(y)}\nx[k+1] = {_sum(x)}'

    def admits(self, point: Point, steps: int = 16) -> str | None:
        """Why ``point`` is left out (None if it is not): a rule whose identity path grows over ``steps`` steps at
        its initial values (the plan's analysis, with the families' ReLU) would start as an exploding network."""
        path = compile_rule(point.rule).identity_path(INIT, steps, relu=True)
        if path.alive and path.rate > 1.05:
            return f'its identity path grows like {path.rate:.2f}^k at its initial values'
        return None


# The built-in algorithms as points of the space (Optuna parameters), enqueued first: ResNet (heavy ball fixed at
# its special values), then each algorithm at its special and theory initial values where the space holds them
# (nesterov's theory values are a schedule, agd sums T over the history: neither is a point of this space).
_ONE = dict(
    streams=1, coeff_shape='scalar', shortcut=True, c0='fixed', c0_value=1.0, c1='absent', g='absent', h='absent'
)
_TWO = dict(streams=2, coeff_shape='scalar', shortcut=True, x_reads='both')
_ADMM = ('a_yy', 'a_yx', 'a_yd', 'a_xx', 'a_xy', 'a_xn', 'a_xd')


def builtin_values(builtin: str, init: str, *names: str) -> dict[str, float]:
    """The built-in rule's coefficients at ``init`` as the space's ``<name>_value`` parameters, read from the
    program of a two-step stage of it (fixed coefficients, folded; step 1, where ``x[k-1]`` is not ``x[0]``): the
    scale of ``T`` is ``g``, its input's coefficients ``c0``, ``c1``, the window's ``b0``, ``b1``; ADMM's are named
    ``a_<stream><what it reads>`` (``n``: y's new iterate, ``d``: the dual ``sum_t (y[t] - x[t])``)."""
    plan = compile_rule(rules.BUILTIN[builtin])
    found = {}
    for stream, update in lower_fixed(plan, 2, init).steps[1].updates:
        for coeff, value in terms(update):
            if isinstance(value, CallT):
                found['g'] = coeff
                found.update({f'c{1 - read.index}': c for c, read in terms(value.arg)})
            elif isinstance(value, RunningDifference):
                found[f'a_{stream}d'] = coeff
            elif len(plan.streams) == 1:
                found[f'b{1 - value.index}'] = coeff
            else:
                found[f'a_{stream}{"n" if isinstance(value, New) else value.stream}'] = coeff
    return {f'{name}_value': round(found.get(name, 0.0), 6) for name in names}


NAMED = {
    'resnet': dict(_ONE, window=1, b0='fixed', **builtin_values('heavy_ball', 'special', 'b0')),
    'gd': dict(_ONE, window=1, b0='absent', shortcut=False),  # gd_net: the plain CNN, no shortcut anywhere
    'heavy_ball special': dict(
        _ONE, window=2, b0='learned', b1='learned', **builtin_values('heavy_ball', 'special', 'b0', 'b1')
    ),
    'heavy_ball theory': dict(
        _ONE, window=2, b0='learned', b1='learned', **builtin_values('heavy_ball', 'theory', 'b0', 'b1')
    ),
    'nesterov special': dict(
        _ONE,
        window=2,
        c0='learned',
        c1='learned',
        b0='absent',
        b1='absent',
        **builtin_values('nesterov', 'special', 'c0', 'c1'),
    ),
    'momentum': dict(
        _ONE,
        window=2,
        g='learned',
        b0='learned',
        b1='learned',
        **builtin_values('momentum', 'special', 'g', 'b0', 'b1'),
    ),
    'admm special': dict(_TWO, **{name: 'learned' for name in _ADMM}, **builtin_values('admm', 'special', *_ADMM)),
    'admm theory': dict(_TWO, **{name: 'learned' for name in _ADMM}, **builtin_values('admm', 'theory', *_ADMM)),
}
"""The built-ins as points; each one's values are its built-in's own (``builtin_values``)."""


def coefficients(params: dict) -> dict[str, tuple[str, float]]:
    """A point's coefficients as ``(state, initial value)``, an absent one at the value that leaves it out (0,
    or 1 for the scale ``g`` of T): the coordinates in which ``distance`` compares points."""
    names = (
        ['g'] + [f'{p}{i}' for p in 'cb' for i in range(params.get('window', 0))] + ['h']
        if params['streams'] == 1
        else list(_ADMM)
    )
    return {name: _coordinate(name, params) for name in names}


def _coordinate(name: str, params: dict) -> tuple[str, float]:
    state = params.get(name, 'absent')
    return (state, params[f'{name}_value']) if state != 'absent' else ('absent', 1.0 if name == 'g' else 0.0)


def distance(params: dict, other: dict) -> float:
    """The Euclidean distance of two points' initial coefficients, plus one for each coefficient whose state
    (absent, fixed, learned) differs and one if their shortcuts differ; points with different stream counts are
    infinitely far apart (a point of a study before shortcuts were searched keeps ResNet's)."""
    if params['streams'] != other['streams']:
        return float('inf')
    mine, theirs = coefficients(params), coefficients(other)
    pairs = [(mine.get(n) or _coordinate(n, {}), theirs.get(n) or _coordinate(n, {})) for n in {*mine, *theirs}]
    shortcuts = params.get('shortcut', True) != other.get('shortcut', True)
    return sum((a[1] - b[1]) ** 2 for a, b in pairs) ** 0.5 + sum(a[0] != b[0] for a, b in pairs) + shortcuts


def nearest_named(params: dict) -> tuple[str, float]:
    """The built-in point nearest to ``params``, and how far it is."""
    return min(((name, distance(params, named)) for name, named in NAMED.items()), key=lambda pair: pair[1])
