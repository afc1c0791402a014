"""The README opens with the two commands that work on a fresh machine; CI runs the second one verbatim."""
from pathlib import Path

import optnets

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / 'README.md').read_text()
    block = text.split('```bash\n', 1)[1].split('```', 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_the_two_commands():
    main_job, tests = readme_commands()
    assert 'optnets.recipes.compare' in main_job and 'dataset-fashion-mnist' in main_job
    assert 'pytest' in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / '.ci' / 'run').read_text().splitlines()
    assert readme_commands()[1] in ci


def test_cli_plan_prints_the_plan(capsys):
    from optnets.cli import main
    main(['plan', 'admm'])
    assert str(optnets.compile_rule(optnets.rules.admm)) in capsys.readouterr().out
