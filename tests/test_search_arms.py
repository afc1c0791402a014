"""The analysis of benchmarks/search_arms.py on a made-up storage: which trials an any-time curve counts."""

import pytest

optuna = pytest.importorskip('optuna', reason='the search extra: pip install "optnets[search]"')

from benchmarks import search_arms  # noqa: E402

COMPLETE, PRUNED, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL


def trial(state, scores, value=None, refused=''):
    return optuna.trial.create_trial(
        state=state,
        value=value,
        intermediate_values=dict(enumerate(scores, start=1)),
        user_attrs={'refused': refused} if refused else {},
    )


def test_an_any_time_curve_counts_finished_full_budget_trials_and_never_falls_below_chance(tmp_path):
    trials = [
        trial(COMPLETE, [0.04, 0.05, 0.05], value=0.05),  # full budget, below chance: the curve stays at chance
        trial(FAIL, []),  # its worker died: not one of the search's trials
        trial(PRUNED, [0.9]),  # pruned after one epoch: never scored at the full budget
        trial(PRUNED, [0.5, 0.6, 0.65]),  # pruned at the last epoch: scored at the full budget
        trial(COMPLETE, [0.5, 0.6, 0.7], value=0.7),
        trial(COMPLETE, [0.5, 0.6, 0.6], value=0.6),
    ]
    storage = search_arms.storage(tmp_path)
    for arm in search_arms.ARMS:
        for seed in search_arms.SEEDS:
            study = optuna.create_study(storage=storage, study_name=f'{arm}_{seed}', direction='maximize')
            study.add_trials(trials)
    curves = search_arms.curves(search_arms.finished(tmp_path, trials=5))
    assert curves['random'][0] == [0.1, 0.1, 0.65, 0.7, 0.7]


def test_a_report_while_the_searches_run_leaves_out_those_unfinished_or_not_begun(tmp_path):
    done = [trial(COMPLETE, [0.5, 0.6, 0.7], value=0.7)] * 3
    storage = search_arms.storage(tmp_path)
    for name, trials in (('builtins_0', done), ('builtins_1', done[:2]), ('random_0', done)):
        optuna.create_study(storage=storage, study_name=name, direction='maximize').add_trials(trials)
    curves = search_arms.curves(search_arms.finished(tmp_path, trials=3))
    assert curves == {'builtins': [[0.7, 0.7, 0.7]], 'random': [[0.7, 0.7, 0.7]]}


def test_counted_in_networks_a_refused_proposal_takes_a_trial_and_no_network(tmp_path):
    trials = [
        trial(COMPLETE, [0.5, 0.6, 0.7], value=0.7),
        trial(PRUNED, [], refused='its identity path explodes'),
        trial(COMPLETE, [0.5, 0.6, 0.8], value=0.8),
    ]
    storage = search_arms.storage(tmp_path)
    optuna.create_study(storage=storage, study_name='random_0', direction='maximize').add_trials(trials)
    assert search_arms.curves(search_arms.finished(tmp_path, trials=3)) == {'random': [[0.7, 0.7, 0.8]]}
    assert search_arms.curves(search_arms.finished(tmp_path, trials=3), networks=True) == {'random': [[0.7, 0.8]]}


def test_the_gap_between_arms_is_in_points_with_welchs_test_and_needs_two_searches_each():
    values = {'builtins': [0.80, 0.82], 'random': [0.78, 0.80], 'no_builtins': [0.79]}
    assert search_arms.gap(values, 'random', 'best') == 'best +2.00 points (Welch p = 0.29, 2 and 2 searches)'
    assert search_arms.gap(values, 'no_builtins', 'best') == 'best: too few searches to compare'


def test_a_searchs_pick_is_its_best_full_budget_trial_and_a_tie_goes_to_the_earlier():
    rows = [
        {'number': 0, 'state': 'pruned', 'epochs': 1, 'val_top1': 0.9},  # never at the full budget
        {'number': 1, 'state': 'complete', 'epochs': 3, 'val_top1': 0.7},
        {'number': 2, 'state': 'pruned', 'epochs': 3, 'val_top1': 0.8},  # pruned at the last epoch: counted
        {'number': 3, 'state': 'complete', 'epochs': 3, 'val_top1': 0.8},
    ]
    assert search_arms.pick(rows, full=3)['number'] == 2
