"""The compiled stage: K steps of a plan, with one transform T per step and stream that applies T, as an
``nn.Module``."""

from __future__ import annotations

import functools
from typing import Callable, Iterator, Protocol, Sequence

import torch
from torch import nn

from ..blocks.protocol import ScalesInputs, ScalesOutput
from ..rules.errors import RuleError
from ..rules.ir import Transform
from ..rules.rule import Rule
from .codegen import compile_forward, generate_forward
from .lower import Settings, emit_coeff, lower
from .plan import Plan, compile_rule, is_transform_sum
from .reversible import InvertibleStep, NotInvertible, ReversibleSteps, run_steps, vanishes

TransformFactory = Callable[[int, str, Sequence[int]], nn.Module]
"""``(step, stream, in_widths) -> T``. A T for a fused history sum takes ``(inputs, scales)``, else one tensor (and
the stage's data after it, with ``transforms_read_data``)."""


class Data(Protocol):
    """What a stage whose rule reads ``G(...)`` is called with: ``gradient(z)`` is ``G`` at ``z``
    (``optnets.recon.DataTerm``: the measurements and the physics)."""

    def gradient(self, z: torch.Tensor) -> torch.Tensor: ...


COEFF_INITS = ('special', 'theory')
"""The initialisations every rule has (a coefficient they do not name starts at 0); a rule may add its own."""
COEFF_SHAPES = ('scalar', 'channel')
MEMORY = ('stored', 'reversible')


class CompiledStage(nn.Module):
    """Executes a ``Plan`` for ``steps`` steps: ``stage.program`` is the lowered program it runs (what ``optnets
    plan`` prints), ``stage.code`` the forward printed from it.

    An optional ``transition`` (stride, width change) runs first and its output is x[0] of every stream.
    Coefficients are ``nn.Parameter`` named after their rule symbols: ``coeff.b1`` holds one entry a step,
    ``coeff.a`` of ``a[j]`` the packed lower triangle ``j <= step`` (``steps * (steps + 1) / 2`` entries), with a
    trailing ``(width, 1, 1)`` when per channel. Fixed coefficients (``learn_coeffs=False``) are number literals in
    the generated code, so fixed special values compile to a plain residual add or concatenation. A stage whose rule
    reads ``G(...)``, or built with ``transforms_read_data``, takes its data as an argument: ``stage(x, data)``.
    An ``activation`` may act in place on what ``T`` returns, so a ``T`` that returns its input (``nn.Identity``)
    needs an activation that does not (``nn.ReLU()``, not ``nn.ReLU(inplace=True)``): else it writes into a tensor
    the forward still holds, the caller's input among them.
    """

    def __init__(
        self,
        plan: Plan | Rule | str,
        steps: int,
        transform: TransformFactory,
        width: int,
        in_width: int | None = None,
        learn_coeffs: bool = True,
        coeff_init: str = 'special',
        coeff_shape: str = 'scalar',
        activation: nn.Module | None = None,
        transition: nn.Module | None = None,
        memory: str = 'stored',
        transforms_read_data: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        plan = plan if isinstance(plan, Plan) else compile_rule(plan)
        in_width = width if in_width is None else in_width
        _check_settings(plan, steps, width, in_width, coeff_init, coeff_shape, memory)
        if memory == 'reversible' and transforms_read_data:
            raise NotInvertible("memory='reversible' runs T on one tensor; these transforms read data too")
        self.plan, self.steps, self.width, self.in_width = plan, steps, width, in_width
        self.transition = transition  # runs first; the stage's x[0] is its output (history reset)
        self.coeff_shape = coeff_shape
        self.out_width = in_width + steps * width if plan.dense else width
        self._add_transforms(transform)
        self.act = activation  # registered after the T's, as before: the parameters keep their order
        self._add_coefficients(coeff_init, learn_coeffs, device, dtype)
        self._inlined = set()  # coefficient buffers (after fuse()) that the generated code reads as literals
        self.memory, self.invertible = memory, None
        self.transforms_read_data = transforms_read_data
        if memory == 'reversible':
            self._make_invertible(coeff_init)
        self._build()

    def _add_transforms(self, transform: TransformFactory):
        """``T_<stream>``: one T a step for each stream that applies T, reading the fused history's widths where
        the plan fuses its calls."""
        for stream in (s for s in self.plan.streams if s.applies_t):
            self.add_module(
                f'T_{stream.stream}',
                nn.ModuleList(
                    transform(
                        step, stream.stream, [self.in_width] + [self.width] * step if stream.fused else [self.width]
                    )
                    for step in range(self.steps)
                ),
            )

    def _add_coefficients(self, coeff_init: str, learn: bool, device, dtype):
        """Each coefficient's values at every step from ``coeff_init``: ``coeff.<name>`` parameters when learned, a
        float per entry in ``_constants`` (number literals of the generated code) when fixed."""
        self.coeff = nn.Module()
        for c in self.plan.coefficients:
            if hasattr(self.coeff, c.name):
                raise RuleError.in_rule(
                    self.plan.rule,
                    f'coefficient {c.name!r} would be stored as coeff.{c.name}, which torch.nn.Module uses: rename it',
                    c.name,
                )
        self._constants = {}  # fixed coefficients: name -> values per step (and history entry)
        for c in self.plan.coefficients if self.steps else ():
            values = [
                c.value(coeff_init, step, j)
                for step in range(self.steps)
                for j in (range(step + 1) if c.indexed else [None])
            ]
            if not learn:
                self._constants[c.name] = values
                continue
            values = torch.tensor(values, dtype=torch.float64)  # on the default device (meta, when timm builds)
            shape = values.shape + ((self.width, 1, 1) if self.coeff_shape == 'channel' else ())
            param = values.reshape(values.shape + (1,) * (len(shape) - values.dim())).expand(shape)
            param = param.to(device=device, dtype=dtype or torch.float32, copy=True)  # owns its memory
            self.coeff.register_parameter(c.name, nn.Parameter(param.contiguous()))

    def _make_invertible(self, coeff_init: str):
        """The analysis that runs the steps backwards; refused where ``x[k-1]``'s coefficient starts at 0."""
        self.invertible = InvertibleStep(self.plan, self.act is not None)
        for k in range(self.steps):
            gamma = self.invertible.coefficients(lambda name, j: self._value(name, k, j))[2]  # noqa: B023
            if vanishes(gamma):
                raise NotInvertible(
                    f'the x[k-1] coefficient is 0 at step {k} with coeff_init={coeff_init!r}, so '
                    'x[k-1] cannot be rebuilt (the step is then a ResNet step): start it away '
                    "from 0 (for heavy ball, coeff_init='theory')"
                )

    def _folded(self) -> frozenset:
        """``(step, stream)`` whose T-term coefficient ``fuse()`` folded into T: read from the ``folded`` buffer,
        which the state carries."""
        folded = getattr(self, 'folded', None)
        names = self.plan.stream_names
        return frozenset((step, names[index]) for step, index in folded.tolist()) if folded is not None else frozenset()

    # -- code generation ----------------------------------------------------------------------------------------
    @staticmethod
    def _position(step: int, j: int | None) -> int:
        """Where (step, j) is stored: one entry a step, or the packed lower triangle j <= step of a[j]."""
        return step if j is None else step * (step + 1) // 2 + j

    def _resolve(self, name: str, step: int, j: int | None):
        if name in self._constants:
            return float(self._constants[name][self._position(step, j)])
        return f'self.coeff.{name}[{self._position(step, j)}]'

    def _rows(self, name: str) -> str:
        """A learned ``a[j]``'s packed triangle split into its rows ``a[0..step]``."""
        # a copy, not a view: a view of a parameter made under no_grad confuses torch's module hooks (FLOP counter)
        return f'self.coeff.{name}.clone().split({list(range(1, self.steps + 1))})'

    def _value(self, name: str, step: int, j: int | None):
        """A coefficient's value at (step, j): a number if fixed, else an entry of its parameter."""
        if name in self._constants:
            return self._resolve(name, step, j)
        return getattr(self.coeff, name).detach()[self._position(step, j)]

    def _coefficient(self, name: str, step: int, j: int | None):
        """A coefficient's value at (step, j) with its graph to the parameter (reversible backward)."""
        if name in self._constants:
            return self._resolve(name, step, j)
        return getattr(self.coeff, name)[self._position(step, j)]

    @torch.compiler.disable  # torch.compile runs the steps eagerly and compiles the rest of the model around them
    def reversible_steps(self, x: torch.Tensor) -> torch.Tensor:
        """The steps with reversible memory (``optnets.compiler.reversible``); plain steps without a graph.
        FX tracing is refused in one line: the steps choose what to save from values."""
        if isinstance(x, torch.fx.Proxy):
            raise RuntimeError(f"memory='reversible' {UNTRACEABLE.format(tool='FX tracing')}")
        if not self.steps:
            return x
        params = [p for name, p in self.named_parameters() if not name.startswith('transition.')]
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
            return ReversibleSteps.apply(x, self, *params)
        return run_steps(self, x)[0].to(x.dtype)

    def _build(self):
        self.program = lower(
            self.plan,
            Settings(
                steps=self.steps,
                activation=self.act is not None,
                skip_first=self.plan.dense and self.in_width != self.width,
                widths=(self.in_width, self.width),
                folded=self._folded(),
                transition=self.transition is not None,
                output='concat' if self.plan.dense else 'last',
                transforms_read_data=self.transforms_read_data,
            ),
            self._resolve,
            lambda name: name not in self._constants,
        )
        if self.memory == 'reversible':
            self.code = REVERSIBLE_FORWARD.format(
                transition='    x_in = self.transition(x_in)\n' if self.transition is not None else ''
            )
            self.__class__ = stage_class(self.code)
            return
        self.code = generate_forward(self.program, self._rows).code
        self.__class__ = stage_class(self.code)

    def __prepare_scriptable__(self):
        """TorchScript asks before it compiles: a reversible stage cannot be scripted, and says so in one line."""
        if self.memory == 'reversible':
            raise RuntimeError(f"memory='reversible' {UNTRACEABLE.format(tool='TorchScript')}")
        return self

    def __reduce__(self):
        """Pickle (``torch.save``, ``copy.deepcopy``, multiprocessing) as the state plus the generated code, which
        selects the class again on load, as ``torch.fx.GraphModule`` does."""
        return _rebuild_stage, (self.__dict__.copy(),)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + 'folded')
        mine = getattr(self, 'folded', None)
        where = prefix.rstrip('.') or 'stage'
        if saved is not None and mine is None:
            raise RuntimeError(
                f'{where}: this state was saved after fuse(), with its coefficients folded into the '
                'weights: call fuse() on this model before loading it'
            )
        if saved is None and mine is not None:
            raise RuntimeError(f'{where}: this state was saved before fuse(): load it, then call fuse()')
        if saved is not None and saved.tolist() != mine.tolist():
            raise RuntimeError(f'{where}: this state folds its coefficients into other steps than this model')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        loaded = {
            name: state_dict[f'{prefix}coeff.{name}']
            for name in sorted(self._inlined)
            if f'{prefix}coeff.{name}' in state_dict
        }
        mismatched = [name for name, value in loaded.items() if value.shape != getattr(self.coeff, name).shape]
        if loaded and not mismatched:  # the literals of the generated code follow the loaded buffers
            self._constants.update({name: value.double().tolist() for name, value in loaded.items()})
            self._build()

    def transforms(self) -> Iterator[nn.Module]:
        """Every step's T, stream by stream."""
        for stream in self.plan.streams:
            yield from getattr(self, f'T_{stream.stream}') if stream.applies_t else ()

    def data_term(self, data: Data | None) -> Data:
        """The data a stage that reads ``G(...)`` (or whose transforms read data) is called with:
        ``stage(x, data)``, where ``data.gradient(z)`` is G (``optnets.recon.DataTerm``)."""
        if data is None:
            raise RuntimeError(
                f'{self.plan.rule} reads data: call the stage as stage(x, data), as a reconstruction network '
                '(optnets.recon.ReconNet) does with its measurements and physics'
            )
        return data

    def kept_tensors(self) -> int:
        """Tensors held between steps (``Program.kept_tensors``); a reversible stage keeps its last two iterates."""
        return 2 if self.memory == 'reversible' else self.program.kept_tensors()

    # -- inference fusion ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def fuse(self) -> 'CompiledStage':
        """Fold coefficients into the neighbouring conv weights and inline the rest as constants (inference). A
        reversible stage becomes a stored one: inference keeps no graph, so there is nothing to rebuild."""
        self.memory = 'stored'
        folded = set(self._folded())
        for stream in (s for s in self.plan.streams if s.applies_t):
            transform_terms = [t for t in stream.terms if isinstance(t.value, Transform)]
            fused_sums = [t for t in stream.terms if is_transform_sum(t)]
            for step in range(self.steps):
                if (step, stream.stream) in folded:
                    continue
                module = getattr(self, f'T_{stream.stream}')[step]
                value = lambda name, j: self._value(name, step, j)  # noqa: E731,B023
                if stream.fused and len(fused_sums) == 1 and not transform_terms and isinstance(module, ScalesInputs):
                    scales = [emit_coeff(fused_sums[0].coeff, value, j) for j in range(step + 1)]
                    module.scale_inputs_(torch.stack([torch.as_tensor(s, dtype=torch.float64) for s in scales]))
                elif len(transform_terms) == 1 and not fused_sums and isinstance(module, ScalesOutput):
                    module.scale_output_(
                        torch.as_tensor(emit_coeff(transform_terms[0].coeff, value, None), dtype=torch.float64)
                    )  # no float32 rounding
                else:
                    continue
                folded.add((step, stream.stream))
        if folded:  # the one record of it, in the state, so that it never loads into an unfused model
            streams = self.plan.stream_names
            self.register_buffer('folded', torch.tensor(sorted((step, streams.index(s)) for step, s in folded)))
        if self.coeff_shape == 'scalar':  # buffers now, in the state; the code inlines those it can as literals
            indexed = {c.name for c in self.plan.coefficients if c.indexed}
            for name, param in list(self.coeff.named_parameters(recurse=False)):
                delattr(self.coeff, name)
                self.coeff.register_buffer(name, param.detach())
                if not (name in indexed and self.plan.dense):  # a row of a[j] stays one tensor
                    self._inlined.add(name)
                    self._constants[name] = param.double().tolist()
        self._build()
        return self

    def extra_repr(self) -> str:
        rule = str(self.plan.rule).replace('\n', '; ')
        return f'{rule!r}, steps={self.steps}, width={self.width}, in_width={self.in_width}'


def _check_settings(
    plan: Plan, steps: int, width: int, in_width: int, coeff_init: str, coeff_shape: str, memory: str
) -> None:
    """Refuse, in one line each, settings the stage cannot run."""
    if memory not in MEMORY:
        raise ValueError(f'memory must be one of {MEMORY}, got {memory!r}')
    inits = (*COEFF_INITS, *(name for name in plan.rule.inits if name not in COEFF_INITS))
    if coeff_init not in inits:  # the rule's own initialisations are selectable too
        raise ValueError(f'coeff_init must be one of {inits}, got {coeff_init!r}')
    if coeff_shape not in COEFF_SHAPES:
        raise ValueError(f'coeff_shape must be one of {COEFF_SHAPES}, got {coeff_shape!r}')
    if steps < 0:
        raise ValueError(f'steps must be >= 0, got {steps}')
    if in_width != width and not plan.dense:
        raise ValueError(
            f'a {plan.rule.name or "rule"} stage keeps its width ({width}), got input width '
            f'{in_width}: put a transition before it'
        )
    if plan.dense and coeff_shape == 'channel':
        raise ValueError(
            "coeff_shape='channel' needs iterates of one width; a dense stage's history mixes "
            f'{in_width} and {width} channels'
        )


UNTRACEABLE = (
    'runs a custom autograd Function whose forward depends on values, which {tool} cannot capture: '
    "build the model with memory='stored' for it (the same state_dict loads into it)"
)
REVERSIBLE_FORWARD = """def forward(self, x_in: torch.Tensor) -> torch.Tensor:
{transition}    return self.reversible_steps(x_in)
"""


@functools.lru_cache(maxsize=1024)
def stage_class(code: str) -> type:
    """One class per distinct generated forward: stages compiled from the same plan and settings share it."""
    return type(CompiledStage.__name__, (CompiledStage,), {'forward': compile_forward(code), '__module__': __name__})


def _rebuild_stage(state: dict) -> CompiledStage:
    stage = CompiledStage.__new__(stage_class(state['code']))
    stage.__dict__.update(state)
    return stage


def compile_stage(
    rule: Rule | str, steps: int, transform: TransformFactory, width: int, linear_head: bool = True, **kwargs
) -> CompiledStage:
    """Rule (or its text) -> plan (``compile_rule(rule, linear_head)``) -> stage (``**kwargs`` are
    ``CompiledStage``'s), in one call."""
    return CompiledStage(compile_rule(rule, linear_head=linear_head), steps, transform, width, **kwargs)
