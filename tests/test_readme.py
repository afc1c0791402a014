"""The README opens with the two commands that work on a fresh machine; CI runs them verbatim."""

from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / 'README.md').read_text()
    block = text.split('```bash\n', 1)[1].split('```', 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_the_two_commands():
    main_job, tests = readme_commands()
    assert 'optnets.recipes.compare' in main_job and 'dataset-fashion-mnist' in main_job
    assert 'pytest' in tests


def test_ci_runs_the_readme_commands():
    ci = (ROOT / '.ci' / 'run').read_text().splitlines()
    assert all(command in ci for command in readme_commands())


def test_cli_plan_prints_the_plan(capsys):
    """The printed plan names every stream's update, every coefficient with its values, and the identity path."""
    from optnets.cli import main

    main(['plan', 'heavy_ball'])
    out = capsys.readouterr().out
    assert out.startswith('Plan for rule heavy_ball: 1 stream(s) x')
    assert 'x[k+1] = T(x[k]) + b1*x[k] + b2*x[k-1]' in out
    assert 'b1       one per step; special: 1.0, theory: 1.9' in out  # theory: 1 + beta, beta = 0.9
    assert 'b2       one per step; special: 0.0, theory: -0.9' in out
    main(['plan', 'x[k+1] = T(x[k]) + c*x[k]'])  # rule text: its own coefficient, as written
    assert 'x[k+1] = T(x[k]) + c*x[k]' in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(['plan', 'x[k+1] = T(x[k]) +'])
    assert info.value.code == 2 and 'column' in capsys.readouterr().err
