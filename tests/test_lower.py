"""The lowered program: what ``optnets plan`` prints is the program a stage runs, the same operations and the same
kept tensors, for every built-in rule, every zoo family and generated rules."""

import contextlib
import io

import pytest
import timm
from hypothesis import HealthCheck, given, settings
from torch import nn

from optnets import rules
from optnets.cli import main as cli_main
from optnets.cli import program_of
from optnets.compiler import CompiledStage
from optnets.compiler.codegen import generate_forward
from optnets.compiler.lower import CallT, Gradient
from optnets.models import FAMILIES

from tests.rulegen import build, cases

KEPT_KINDS = ('window', 'history', 'sum', 'difference')
"""The variables of a generated forward that live from one step to the next (new iterates, the concatenation a
step reads and the rows of a coefficient are made and read within a step)."""


def code_steps(code: str) -> list[str]:
    """The generated forward's lines of each step."""
    return code.split('# step ')[1:]


def assert_runs_as_printed(stage: CompiledStage):
    """The stage's code makes the calls of its program, step by step, and keeps the tensors the program keeps."""
    program = stage.program
    for k, lines in enumerate(code_steps(stage.code)):
        calls = program.calls(k)
        for stream in program.plan.stream_names:
            made = [c for c in calls if isinstance(c, CallT) and c.stream == stream]
            assert lines.count(f'self.T_{stream}[{k}](') == len(made), (stage.code, str(program))
        assert lines.count('data.gradient(') == sum(isinstance(c, Gradient) for c in calls)
    variables = generate_forward(program, stage._rows).variables
    kept = sum(stage.steps + 1 if kind == 'history' else 1 for kind in variables.values() if kind in KEPT_KINDS)
    assert stage.kept_tensors() == program.kept_tensors() == kept, (stage.code, str(program))


def printed(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli_main(['plan', *argv])
    return out.getvalue()


@pytest.mark.parametrize('name', sorted(rules.BUILTIN))
@pytest.mark.parametrize('learn', [True, False], ids=['learned', 'fixed'])
@pytest.mark.parametrize('init', ['special', 'theory'])
def test_optnets_plan_prints_the_program_the_builtin_rules_stage_runs(name, learn, init):
    for steps in (1, 4):
        argv = [name, '--steps', str(steps), '--init', init] + ([] if learn else ['--fixed'])
        stage = CompiledStage(
            rules.BUILTIN[name], steps, lambda *_: nn.Identity(), 1, learn_coeffs=learn, coeff_init=init
        )
        assert printed(*argv) == f'{stage.program}\n'
        assert_runs_as_printed(stage)


def test_admm_with_fixed_coefficients_prints_the_two_tensors_it_keeps():
    """The issue's example: a plan that says the dual's running difference is kept, while the fixed stage folds it
    away; the program and the stage now give one answer, in one unit."""
    learned, fixed = program_of(rules.admm, 3, True, 'special'), program_of(rules.admm, 3, False, 'special')
    assert learned.kept_tensors() == 3 and 'running difference D' in str(learned)
    assert fixed.kept_tensors() == 2 and 'running difference D' not in str(fixed)
    assert program_of(rules.agd, 3, True, 'special').kept_tensors() == 4  # x[0..3]: the history grows with depth


@pytest.mark.parametrize('family', FAMILIES)
def test_every_zoo_familys_stages_run_their_printed_programs(family):
    model = timm.create_model(timm.list_models(module=family)[0], device='meta', in_chans=3)
    stages = [m for m in model.modules() if isinstance(m, CompiledStage)]
    assert stages
    for stage in stages:
        if stage.memory == 'stored':
            assert_runs_as_printed(stage)
            assert f'{stage.program}'.count('step ') >= stage.steps


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(cases())
def test_generated_rules_run_their_printed_programs(case):
    """Fixed and learned coefficients, dense and two-stream rules, the data gradient, activations: the code of
    each generated stage makes its program's calls and keeps its program's tensors."""
    try:
        _, stage, *_ = build(case)
    except (rules.RuleError, ValueError):
        return  # refused rules are tests/test_semantics.py's
    assert_runs_as_printed(stage)
