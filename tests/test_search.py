import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import timm
import torch

optuna = pytest.importorskip('optuna', reason='the search extra: pip install "optnets[search]"')

from optnets import rules  # noqa: E402
from optnets.compiler import compile_rule  # noqa: E402
from optnets.rules.semantics import evaluate, output  # noqa: E402
from optnets.search import NAMED, RuleSpace, distance, export, leaderboard, nearest_named, run  # noqa: E402
from optnets.search.study import leaderboard_text  # noqa: E402
from optnets.search.study import cost  # noqa: E402
from tests.rulegen import Case, check  # noqa: E402

WORKER = Path(__file__).with_name('search_worker.py')
BUILTIN_OF = {  # the named point -> (the built-in rule, the initialisation it starts from there)
    'resnet': ('heavy_ball', 'special'),
    'gd': ('gd', 'special'),
    'heavy_ball special': ('heavy_ball', 'special'),
    'heavy_ball theory': ('heavy_ball', 'theory'),
    'nesterov special': ('nesterov', 'special'),
    'momentum': ('momentum', 'theory'),
    'admm special': ('admm', 'special'),
    'admm theory': ('admm', 'theory'),
}


def point(params: dict, space: RuleSpace | None = None):
    return (space or RuleSpace()).suggest(optuna.trial.FixedTrial(params))


def run_rule(rule, init: str, transforms: list) -> float:
    """The reference semantics on numbers: each stream's T a fixed random affine map, 4 steps from 0.7."""
    plan = compile_rule(rule)
    values = {c.name: c for c in plan.coefficients}
    coefficient = lambda name, k, j: values[name].value(init, k, j)  # noqa: E731
    history = evaluate(rule, 0.7, 4, lambda k, stream, j: transforms[k], coefficient)
    return output(rule, history)


@pytest.mark.parametrize('name', NAMED)
def test_each_named_point_computes_what_its_built_in_algorithm_computes(name):
    rng = random.Random(0)
    affine = [(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(4)]
    transforms = [lambda v, a=a, b=b: a * v + b for a, b in affine]
    builtin, init = BUILTIN_OF[name]
    searched = point(NAMED[name])
    assert run_rule(searched.rule, 'search', transforms) == pytest.approx(
        run_rule(rules.BUILTIN[builtin], init, transforms), rel=1e-12
    )
    assert nearest_named(searched.params) == (name, 0.0)


def test_points_drawn_from_the_space_compile_to_what_they_mean():
    """The semantics property test over the search space: random points, each compiled stage against the
    reference evaluation of its rule (values, gradients, fused), with random coefficient values."""
    space, sampler = RuleSpace(), optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    rng = random.Random(0)
    for _ in range(60):
        trial = study.ask()
        drawn = space.suggest(trial)
        study.tell(trial, 0.0)
        case = Case(
            text=str(drawn.rule),
            kind='residual',
            steps=rng.randint(1, 4),
            learn=rng.random() < 0.5,
            shape=drawn.model_kwargs['coeff_shape'],
            activation='relu',
            train=rng.random() < 0.5,
            skip_input=False,
            seed=rng.randint(0, 2**16),
        )
        assert check(case) == [], drawn.text


def test_every_point_keeps_the_skeletons_cost_with_or_without_the_transitions_shortcut():
    space = RuleSpace()
    skeletons = {True: cost(point(NAMED['resnet']), space), False: cost(point(NAMED['gd']), space)}
    assert skeletons[False][0] < skeletons[True][0]  # the shortcuts' projections are all that differ
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        drawn = space.suggest(trial)
        params, gmacs = cost(drawn, space)
        study.tell(trial, 0.0)
        base = skeletons[drawn.shortcut]
        assert gmacs == base[1] and base[0] <= params <= 1.01 * base[0]


def test_a_searched_point_builds_the_skeleton_it_names_gd_without_any_shortcut():
    from optnets import rule_model
    from optnets.search.study import register_kwargs

    def shortcuts(params: dict) -> list[bool]:
        spec = register_kwargs(point(params), RuleSpace())
        model = rule_model('trial', **{k: v for k, v in spec.items() if k != 'model_kwargs'}, **spec['model_kwargs'])
        return [m.shortcut for m in model.modules() if type(m).__name__ == 'ResidualTransition']

    gd_net = timm.create_model('gd_net_56_cifar')
    assert shortcuts(NAMED['gd']) == [m.shortcut for m in gd_net.modules() if hasattr(m, 'shortcut')] == [False] * 3
    assert shortcuts(NAMED['resnet']) == [True] * 3


def test_a_study_without_the_built_ins_or_with_random_search_enqueues_nothing(tmp_path):
    storage = f'sqlite:///{tmp_path / "study.db"}'
    for study_name, sampler in (('tpe', 'tpe'), ('random', 'random')):
        study = run(RuleSpace(), toy, 4, storage, study_name, seed=3, sampler=sampler, builtins=False)
        assert not [t for t in study.trials if 'named' in t.user_attrs]
        assert study.user_attrs['sampler'] == {'tpe': 'TPESampler', 'random': 'RandomSampler'}[sampler]
    with pytest.raises(ValueError, match='sampler must be one of'):
        run(RuleSpace(), toy, 4, storage, 'other', sampler='grid')


def test_a_rule_whose_identity_path_explodes_is_refused_and_others_are_admitted():
    space = RuleSpace()
    exploding = point(dict(NAMED['resnet'], b0_value=2.0))
    assert 'grows like 2.00^k' in space.admits(exploding)
    assert all(space.admits(point(params)) is None for params in NAMED.values())


def test_distance_counts_initial_values_and_changed_states():
    hb = NAMED['heavy_ball special']
    assert distance(hb, NAMED['resnet']) == 2.0  # b0 fixed -> learned, b1 absent -> learned (at 0)
    assert distance(hb, NAMED['heavy_ball theory']) == pytest.approx((0.9**2 + 0.9**2) ** 0.5)
    assert distance(hb, NAMED['admm special']) == float('inf')


def test_two_stream_rules_need_a_skeleton_with_even_steps():
    with pytest.raises(ValueError, match='two_streams=False'):
        RuleSpace('imagenet', 18)
    assert RuleSpace('imagenet', 18, two_streams=False).steps == (1, 1, 1, 1)


def toy(trial, point, space) -> float:
    for epoch in (1, 2, 3):
        trial.report(0.5 + 0.1 * epoch, epoch)
    return 0.8 + 0.001 * (len(point.text) % 50)


def test_a_study_resumes_to_its_trial_count_with_the_built_ins_enqueued_once(tmp_path):
    storage = f'sqlite:///{tmp_path / "study.db"}'
    run(RuleSpace(), toy, 5, storage)
    study = run(RuleSpace(), toy, 12, storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 12
    named = [t.user_attrs['named'] for t in study.trials if 'named' in t.user_attrs]
    assert named == list(NAMED)
    rows = leaderboard(storage)
    values = [r['val_top1'] for r in rows if r['val_top1'] is not None]
    assert len(rows) == 12 and values == sorted(values, reverse=True)
    assert [r['val_top1'] for r in rows[len(values) :]] == [None] * (12 - len(values))  # refused ones last


def test_a_pareto_study_searches_depth_and_width_and_shows_its_front(tmp_path):
    """Accuracy against GMACs: the skeleton's depth and widths are searched, the built-ins enqueued at ResNet-20's,
    every trial scored on both, the leaderboard's front the non-dominated trials, Optuna's Pareto plot drawn."""
    space = RuleSpace(depths=(20, 32), width_scales=(0.5, 1.0))
    storage = f'sqlite:///{tmp_path / "pareto.db"}'
    accuracy = lambda trial, point, space: 0.5 + 0.01 * (trial.number % 7)  # noqa: E731
    study = run(space, accuracy, 10, storage, 'front', objectives=('val_top1', 'gmacs'))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(len(t.values) == 2 and t.values[1] == t.user_attrs['cost'][1] for t in complete)
    assert [(t.params['depth'], t.params['width']) for t in study.trials[: len(NAMED)]] == [(20, 1.0)] * len(NAMED)

    def dominated(t):
        return any(o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in complete)

    rows = leaderboard(storage, 'front')
    assert {r['number'] for r in rows if r['pareto']} == {t.number for t in complete if not dominated(t)}
    assert '[Pareto front]' in leaderboard_text(rows)
    optuna.visualization.plot_pareto_front(study, target_names=['val top-1', 'GMACs']).write_html(tmp_path / 'f.html')
    with pytest.raises(ValueError, match='objectives must be'):
        run(space, toy, 1, storage, 'other', objectives=('gmacs',))


def test_a_searched_width_scale_scales_the_cost_and_a_study_of_several_objectives_is_never_reported_to():
    from types import SimpleNamespace

    from optnets.recipes.search import ReportToTrial

    space = RuleSpace(depths=(20, 32), width_scales=(0.5, 1.0), two_streams=False)
    costs = {w: cost(point(dict(space.named('resnet'), width=w), space), space)[1] for w in (0.5, 1.0)}
    assert costs[0.5] / costs[1.0] == pytest.approx(0.25, rel=0.05)  # convolutions cost width squared
    deeper = cost(point(dict(space.named('resnet'), depth=32), space), space)[1]
    assert deeper / costs[1.0] == pytest.approx(31 / 19, rel=0.05)  # ResNet-32's 31 weighted layers, against 19
    with pytest.raises(ValueError, match='depths must hold depth'):
        RuleSpace(depths=(32, 44))
    with pytest.raises(ValueError, match='width_scales need a preset whose skeleton names its widths'):
        RuleSpace('imagenet', 18, two_streams=False, width_scales=(0.5, 1.0))
    trial = optuna.create_study(directions=['maximize', 'minimize']).ask()
    report = ReportToTrial(trial)
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={'val/top1': torch.tensor(0.7)}, current_epoch=0)
    report.on_validation_epoch_end(trainer, None)  # Optuna's report would raise for two objectives
    assert report.best == pytest.approx(0.7) and not report.pruned


def test_the_docs_plain_optuna_plots_draw_a_study_with_the_search_extra(tmp_path):
    storage = f'sqlite:///{tmp_path / "search.db"}'
    run(RuleSpace(), toy, 12, storage)
    study = optuna.load_study(study_name='rules', storage=storage)  # as docs/search.md
    history = optuna.visualization.plot_optimization_history(study)
    history.write_html(tmp_path / 'history.html')
    optuna.visualization.plot_param_importances(study).write_html(tmp_path / 'importances.html')
    best = [trace for trace in history.data if trace.name == 'Best Value'][0]
    complete = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert max(best.y) == max(complete) and (tmp_path / 'history.html').stat().st_size > 0


def test_export_writes_register_lines_and_configs_and_never_overwrites(tmp_path):
    storage = f'sqlite:///{tmp_path / "study.db"}'
    run(RuleSpace(), toy, 10, storage)
    written = export(storage, tmp_path / 'found', top=2)
    assert [p.name for p in written][0] == 'register.py' and len(written) == 3
    namespace = {}
    exec((tmp_path / 'found' / 'register.py').read_text(), namespace)  # the user's own file: import it
    import timm

    name = written[1].stem
    model = timm.create_model(name, num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    before = written[1].read_text()
    with pytest.raises(FileExistsError, match='not overwriting'):
        export(storage, tmp_path / 'found', top=2)
    assert written[1].read_text() == before


def test_the_cli_runs_a_study_with_the_recipe_then_shows_and_exports_it(tmp_path, capsys):
    """``optnets search`` trains each trial with the Lightning recipe (synthetic images: a stand-in for the data,
    never a result), and an exported config trains with ``optnets train``; neither registers anything in timm."""
    pytest.importorskip('lightning')
    from optnets.cli import main

    registered = timm.list_models()

    storage = f'sqlite:///{tmp_path / "study.db"}'
    synthetic = [
        '--data',
        'optnets.recipes.data.SyntheticDataModule',
        '--data.length',
        '16',
        '--data.batch_size',
        '8',
        '--trainer.max_epochs',
        '2',
        '--trainer.limit_val_batches',
        '1',
    ]
    main(
        [
            'search',
            '--trials',
            '3',
            '--storage',
            storage,
            '--root-dir',
            str(tmp_path / 'runs'),
            '--no-progress',
            *synthetic,
        ]
    )
    assert timm.list_models() == registered  # each trial's rule built its model, with no global entry
    main(['search', 'show', '--storage', storage])
    shown = capsys.readouterr().out
    assert '(resnet)' in shown and '(gd)' in shown and 'complete' in shown
    main(['search', 'export', '--storage', storage, '--top', '1', '--out', str(tmp_path / 'found')])
    config = next((tmp_path / 'found').glob('searched_*.yaml'))
    main(
        [
            'train',
            'fit',
            '--config',
            'search_fashion_mnist',
            '--config',
            str(config),
            *synthetic,
            '--trainer.fast_dev_run',
            'true',
            '--trainer.default_root_dir',
            str(tmp_path / 'final'),
        ]
    )
    assert timm.list_models() == registered


def test_bad_search_options_are_one_line_and_exit_2(tmp_path, capsys):
    from optnets.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(['search', '--trials', '3', '--storage', f'sqlite:///{tmp_path}/s.db', '--lr', '0.1'])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().count('\n') == 0
    with pytest.raises(SystemExit):
        main(['search', 'show', '--storage', f'sqlite:///{tmp_path}/nothing.db'])


BAD_STORAGES = {  # name -> (URL, with TMP filled in; what the one line says)
    'not a URL': ('garbage', 'Could not parse'),
    'empty': ('', 'Could not parse'),
    'no driver': ('mysql://x', "No module named 'MySQLdb'"),
    'a folder': ('sqlite:///TMP', 'is a folder'),
    'corrupt file': ('sqlite:///TMP/corrupt.db', 'file is not a database'),
    'missing file': ('sqlite:///TMP/missing.db', 'no study storage at'),
    'missing journal': ('journal:TMP/missing.log', 'no study storage at'),
    'no server': ('postgresql://nobody@127.0.0.1:9/x', 'Connection refused'),
}


@pytest.mark.parametrize('action', ['show', 'export', 'run'])
@pytest.mark.parametrize('case', list(BAD_STORAGES))
def test_every_bad_storage_is_one_line_exit_2_and_creates_nothing(case, action, tmp_path, capsys):
    from optnets.cli import main

    url, message = BAD_STORAGES[case]
    url = url.replace('TMP', str(tmp_path))
    (tmp_path / 'corrupt.db').write_bytes(b'not a database at all')
    before = sorted(tmp_path.iterdir())
    if action == 'run' and case.startswith('missing'):
        return  # run creates a new storage: that is its job
    extra = ['--trials', '1', '--root-dir', str(tmp_path / 'runs')] if action == 'run' else []
    with pytest.raises(SystemExit) as exit_:
        main(['search', action, '--storage', url, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and message in err[0], err
    assert sorted(tmp_path.iterdir()) == before and (tmp_path / 'corrupt.db').read_bytes() == b'not a database at all'


def test_a_read_only_storage_is_shown_but_a_run_on_it_is_one_line(tmp_path, capsys):
    """SQLite's read-only mode (a file mode would not stop root, as CI runs)."""
    from optnets.cli import main

    run(RuleSpace(), toy, 2, f'sqlite:///{tmp_path / "study.db"}')
    read_only = f'sqlite:///file:{tmp_path / "study.db"}?mode=ro&uri=true'
    main(['search', 'show', '--storage', read_only])
    assert 'resnet' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(['search', 'run', '--storage', read_only, '--trials', '4', '--root-dir', str(tmp_path / 'runs')])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and 'readonly' in err[0], err


def test_workers_starting_together_on_a_new_sqlite_file_all_open_it(tmp_path):
    """Workers racing to create a new database's tables: the loser retries instead of dying with an
    IntegrityError on alembic_version (or "table already exists"). Four workers, three new databases: before each
    round every worker waits at a barrier (a file each), so that all four open the new file at once."""
    code = (
        'import sys, time\n'
        'from pathlib import Path\n'
        'from optnets.search.study import storage_of\n'
        'folder, me = Path(sys.argv[1]), sys.argv[2]\n'
        'for round_ in range(3):\n'
        "    (folder / f'ready{round_}.{me}').touch()\n"
        '    deadline = time.time() + 120\n'  # the harness's patience: imports on a loaded machine
        "    while len(list(folder.glob(f'ready{round_}.*'))) < 4:\n"
        "        assert time.time() < deadline, 'another worker never reached this round'\n"
        '        time.sleep(0.005)\n'
        "    storage_of(f'sqlite:///{folder}/race{round_}.db')\n"
    )
    workers = [
        subprocess.Popen([sys.executable, '-c', code, str(tmp_path), str(i)], stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    errors = [worker.communicate(timeout=120)[1][-2000:] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), '\n'.join(errors)
    assert sorted(p.name for p in tmp_path.glob('race*.db')) == ['race0.db', 'race1.db', 'race2.db']


@pytest.fixture
def postgres():
    """A PostgreSQL cluster of its own, started for the test and stopped after it (Debian's ``postgresql``, run
    as the ``postgres`` user: initdb and pg_ctl refuse root), on a free loopback port."""
    bindir = next(Path('/usr/lib/postgresql').glob('*/bin'), None) if Path('/usr/lib/postgresql').exists() else None
    if bindir is None or os.geteuid() != 0 or not shutil.which('runuser'):
        pytest.skip("needs Debian's postgresql package and root (to run it as the postgres user)")
    pytest.importorskip('psycopg', reason='the search extra: pip install "optnets[search]"')
    folder = Path(tempfile.mkdtemp(prefix='optnets-pg-'))
    shutil.chown(folder, 'postgres')
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]

    def as_postgres(*command):
        subprocess.run(['runuser', '-u', 'postgres', '--', *command], check=True, capture_output=True, cwd=folder)

    as_postgres(str(bindir / 'initdb'), '-D', str(folder / 'data'), '-A', 'trust', '-U', 'postgres')
    as_postgres(
        str(bindir / 'pg_ctl'),
        '-D',
        str(folder / 'data'),
        '-l',
        str(folder / 'log'),
        '-w',
        '-o',
        f'-p {port} -k {folder} -c listen_addresses=127.0.0.1',
        'start',
    )
    try:
        as_postgres(str(bindir / 'createdb'), '-h', '127.0.0.1', '-p', str(port), 'search')
        yield f'postgresql://postgres@127.0.0.1:{port}/search'
    finally:
        as_postgres(str(bindir / 'pg_ctl'), '-D', str(folder / 'data'), '-m', 'immediate', 'stop')
        shutil.rmtree(folder, ignore_errors=True)


def test_a_trial_that_trains_nothing_fails_with_its_reason_instead_of_scoring(tmp_path):
    """Fewer training images than a batch: Lightning trains and validates nothing; the trial is failed with the
    reason, never a complete trial with no score."""
    from optnets.cli import main

    storage = f'sqlite:///{tmp_path / "study.db"}'
    main(
        ['search', '--trials', '1', '--storage', storage, '--root-dir', str(tmp_path / 'runs'), '--no-progress']
        + ['--data', 'optnets.recipes.data.SyntheticDataModule', '--data.length', '4']
        + ['--data.batch_size', '8', '--trainer.max_epochs', '1']
    )
    study = optuna.load_study(storage=storage, study_name='rules')
    first = study.trials[0]  # ResNet, the first built-in: never refused before training
    assert first.state == optuna.trial.TrialState.FAIL and first.user_attrs['failed'] == 'no validation epoch ran'


def test_two_workers_share_a_postgresql_study_and_a_killed_ones_trial_is_failed_then_run_again(postgres, tmp_path):
    marks = tmp_path / 'marks'
    marks.mkdir()

    def start(seconds: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(WORKER), postgres, '16', str(marks), seconds], cwd=WORKER.parent)

    slow = start('30')  # its first trial outlives the test: it is killed in it
    deadline = time.monotonic() + 60
    while not any(marks.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    fast = start('0.05')
    time.sleep(2)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    assert fast.wait(timeout=300) == 0
    study = optuna.load_study(storage=postgres, study_name='rules')
    states = [t.state for t in study.trials]
    finished = [t for t in study.trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
    killed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(finished) == 16, states
    assert len(killed) == 1 and killed[0].number in {
        int(m.name.split('.')[0]) for m in marks.iterdir() if int(m.name.split('.')[1]) == slow.pid
    }
    ran = [int(m.name.split('.')[0]) for m in marks.iterdir()]
    assert len(ran) == len(set(ran)), 'a trial ran twice'
    assert {t.number for t in finished if 'refused' not in t.user_attrs} <= set(ran)
    again = [t for t in finished if t.system_attrs.get('failed_trial') == killed[0].number]
    assert len(again) == 1 and again[0].params == killed[0].params, 'the killed trial was not run again'
    assert again[0].user_attrs.get('named') == killed[0].user_attrs.get('named')  # a built-in stays one
