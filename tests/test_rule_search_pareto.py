"""The table of benchmarks/rule_search_pareto.py on a made-up study: cheapest first, its Pareto front marked."""

import pytest

optuna = pytest.importorskip('optuna', reason='the search extra: pip install "optnets[search]"')

from benchmarks import rule_search_pareto  # noqa: E402


def trial(accuracy, gmacs, depth, width, named=''):
    return optuna.trial.create_trial(
        values=[accuracy, gmacs],
        params={'depth': depth, 'width': width},
        distributions={
            'depth': optuna.distributions.CategoricalDistribution([20, 32]),
            'width': optuna.distributions.CategoricalDistribution([0.5, 1.0]),
        },
        user_attrs={'rule': 'x[k+1] = T(x[k])', 'named': named, 'cost': [1000, gmacs]},
    )


def test_the_pareto_table_lists_complete_trials_cheapest_first_and_marks_those_nothing_beats(tmp_path):
    storage = f'sqlite:///{tmp_path / "study.db"}'
    study = optuna.create_study(storage=storage, study_name='rules', directions=['maximize', 'minimize'])
    study.add_trials(
        [
            trial(0.80, 0.04, 20, 1.0, named='resnet'),
            trial(0.70, 0.08, 32, 1.0),  # both less accurate and dearer than the first: off the front
            trial(0.85, 0.09, 32, 1.0),
            trial(0.60, 0.01, 20, 0.5),
        ]
    )
    rows = rule_search_pareto.table(rule_search_pareto.points(storage), found=[])[2:]
    assert [row.split(' | ')[4] for row in rows] == ['0.0100', '0.0400', '0.0800', '0.0900']
    assert [row.endswith('| yes |') for row in rows] == [True, True, False, True]
    assert '(resnet)' in rows[1]
