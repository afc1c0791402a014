"""An Optuna study over a ``RuleSpace``: the built-in algorithms first, then TPE, pruned by Hyperband on
the validation accuracy reported after each epoch; its leaderboard, and its best rules written out.

A storage is an Optuna URL: ``sqlite:///search.db`` (one file, nothing to start; the default), a database many
workers share (``postgresql://user@host/db``), or ``journal:PATH``, Optuna's journal file on a shared file system.
A trial whose worker dies is marked failed by the next worker's heartbeat check (SQLite and PostgreSQL), and its
point runs again as a new trial, up to ``RETRIES`` times: a search cut off mid-trial loses no point, the enqueued
built-ins included. The study goes on.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from ..extras import require
from ..models.facts import gmacs
from ..models.network import OptNet
from . import DEFAULT_STORAGE
from .space import INIT, NAMED, Point, RuleSpace, nearest_named

require('search')
import optuna  # noqa: E402  (after the check that names the extra)
import sqlalchemy  # noqa: E402  (Optuna's own database layer)

BUDGET = 1.02  # a point's parameters and GMACs, at most this times the skeleton's (coefficients are all it adds)


class StorageError(ValueError):
    """A storage that cannot be opened, read or written: its URL and the first line of the cause."""


def storage_of(url: str, heartbeat: int = 60, create: bool = True) -> optuna.storages.BaseStorage:
    """The Optuna storage of ``url`` (see the module's docstring), with a heartbeat where the storage has one.

    With ``create=False`` a file storage that does not exist is a ``LookupError``, never created. Workers that
    start at once on a new database race to create its tables: the loser retries. Anything else that keeps the
    storage from opening (a bad URL, a missing driver, a corrupt or unreadable file) is one ``StorageError``."""
    path = _file_of(url)
    if path is not None and path.is_dir():
        raise StorageError(f'{path} is a folder: give the file of a study storage, e.g. sqlite:///{path}/search.db')
    if not create and path is not None and not path.is_file():
        raise LookupError(f'no study storage at {path}: `optnets search run --storage {url}` makes one')
    deadline = time.monotonic() + STORAGE_RACE_SECONDS
    for attempt in itertools.count(1):
        try:
            return _open(url, heartbeat)
        except Exception as error:  # noqa: BLE001 - SQLAlchemy, its drivers and Optuna raise many kinds for one cause
            racing = isinstance(error, sqlalchemy.exc.IntegrityError) or (
                isinstance(error, sqlalchemy.exc.OperationalError)
                and ('locked' in str(error) or 'already exists' in str(error))  # the other one's CREATE TABLE won
            )
            if not racing or time.monotonic() > deadline:
                raise StorageError(f'cannot open the storage {url!r}: {_first_line(error)}') from None
            time.sleep(min(0.2 * attempt, 1.0))


STORAGE_RACE_SECONDS = 60
"""How long a worker retries a storage whose tables other workers are creating at the same moment (a loaded
machine can hold SQLite's lock for seconds)."""


def _open(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    if url.startswith('journal:'):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix('journal:')))
    with warnings.catch_warnings():  # the heartbeat is what fails a dead worker's trial: wanted, experimental or not
        warnings.filterwarnings('ignore', category=optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat, heartbeat_stale_trial_callback=retry
        )


RETRIES = 2
"""How many times a dead worker's trial runs again: a point whose run kills its worker each time is given up."""


def _file_of(url: str) -> Path | None:
    """The file of a SQLite or journal URL (``sqlite:///relative.db``, ``sqlite:////absolute.db``), else None."""
    if url.startswith('journal:'):
        return Path(url.removeprefix('journal:'))
    if url.startswith('sqlite:///') and url != 'sqlite:///:memory:':
        return Path(url.removeprefix('sqlite:///').split('?')[0].removeprefix('file:'))  # file: for ?uri=true
    return None


def _first_line(error: BaseException) -> str:
    """The first line of the innermost cause (Optuna wraps the database's own error in a generic one)."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Errors of the storage at ``url`` while a study works (a read-only or corrupt file, a lost server) as one
    ``StorageError``."""
    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        raise StorageError(f'the storage {url!r} failed: {_first_line(error)}') from None


def cost(point: Point, space: RuleSpace) -> tuple[int, float]:
    """Parameters and GMACs of ``point``'s network on the space's skeleton (built on the meta device)."""
    size = 32 if space.preset == 'cifar' else 224
    kwargs = dict(register_kwargs(point, space)['model_kwargs'], num_classes=10 if space.preset == 'cifar' else 1000)
    with torch.device('meta'):
        model = OptNet.for_rule(point.rule)(rule=point.rule, shortcut=point.shortcut, **{**space.skeleton, **kwargs})
    return sum(p.numel() for p in model.parameters()), gmacs(model, (3, size, size))


def register_kwargs(point: Point, space: RuleSpace) -> dict:
    """What ``optnets.register`` takes to make ``point`` a timm model: the rule, its skeleton, its inits."""
    return dict(
        rule=str(point.rule),
        preset=space.preset,
        depth=space.depth,
        inits={INIT: dict(point.rule.inits[INIT])},
        shortcut=point.shortcut,
        model_kwargs=dict(point.model_kwargs),
    )


def run(
    space: RuleSpace,
    objective: Callable,
    trials: int,
    storage: str = DEFAULT_STORAGE,
    study_name: str = 'rules',
    seed: int = 0,
    progress: bool = False,
    heartbeat: int = 60,
    sampler: str = 'tpe',
    builtins: bool = True,
    objectives: Sequence[str] = ('val_top1',),
) -> optuna.Study:
    """Run (or resume, or join) the study until it holds ``trials`` finished trials, complete or pruned.

    ``objective(trial, point, space)`` trains ``point`` and returns its validation accuracy, reporting it after
    each epoch (``trial.report``; ``optnets.recipes.search.RecipeObjective`` does). The first process to create
    the study enqueues the built-ins (``NAMED``) if ``builtins``; others join it. ``sampler``: ``'tpe'`` (its
    first 10 trials random, the enqueued built-ins among them) or ``'random'``. ``objectives``: the validation
    accuracy alone (pruned by Hyperband, every point within ``BUDGET`` of the skeleton's cost), or
    ``('val_top1', 'gmacs')``: accuracy against cost, Optuna's multi-objective search of their Pareto front (no
    pruning, which Optuna does not do for several objectives; a space whose skeleton is searched makes the costs
    differ). Returns the study."""
    if sampler not in SAMPLERS:
        raise ValueError(f'sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}')
    if tuple(objectives) not in (('val_top1',), ('val_top1', 'gmacs')):
        raise ValueError(f"objectives must be ('val_top1',) or ('val_top1', 'gmacs'), got {tuple(objectives)}")
    with storage_errors(storage):
        backend = storage_of(storage, heartbeat)
        return _run(
            space, objective, trials, backend, study_name, SAMPLERS[sampler](seed), builtins, progress, objectives
        )


OBJECTIVES = {'val_top1': 'maximize', 'gmacs': 'minimize'}
"""What a study can optimise, and which way."""

SAMPLERS = {
    'tpe': lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
    'random': lambda seed: optuna.samplers.RandomSampler(seed=seed),
}

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
"""The trials a study's ``trials`` counts (a refused rule is pruned); a failed one does not: another runs instead."""


def _run(space, objective, trials, backend, study_name, sampler, builtins, progress, objectives) -> optuna.Study:
    pareto = len(objectives) > 1
    pruner = (
        optuna.pruners.NopPruner()
        if pareto
        else optuna.pruners.HyperbandPruner(min_resource=1, max_resource='auto', reduction_factor=3)
    )
    try:
        study = optuna.create_study(
            storage=backend,
            study_name=study_name,
            directions=[OBJECTIVES[name] for name in objectives],
            sampler=sampler,
            pruner=pruner,
        )
        study.set_user_attr('space', repr(space))
        study.set_user_attr('sampler', type(sampler).__name__)
        study.set_user_attr('objectives', list(objectives))
        for name in NAMED if builtins else ():
            study.enqueue_trial(space.named(name), user_attrs={'named': name})
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=backend, study_name=study_name, sampler=sampler, pruner=pruner)
    skeleton = cost(space.suggest(optuna.trial.FixedTrial(space.named('resnet'))), space)

    def evaluate(trial) -> float:
        point = space.suggest(trial)
        nearest, far = nearest_named(point.params)
        trial.set_user_attr('rule', point.text)
        trial.set_user_attr('register', register_kwargs(point, space))
        trial.set_user_attr('nearest', [nearest, far])
        refused = space.admits(point)
        params, gmacs = cost(point, space)
        trial.set_user_attr('cost', [params, gmacs])
        if refused is None and not pareto and (params > BUDGET * skeleton[0] or gmacs > BUDGET * skeleton[1]):
            refused = f"{params} parameters and {gmacs:.4f} GMACs exceed {BUDGET} times the skeleton's {skeleton}"
        if refused:
            trial.set_user_attr('refused', refused)
            raise optuna.TrialPruned(refused)
        accuracy = objective(trial, point, space)
        return (accuracy, gmacs) if pareto else accuracy

    left = trials - len(study.get_trials(deepcopy=False, states=FINISHED))
    if left > 0:
        study.optimize(
            evaluate,
            n_trials=left,
            show_progress_bar=progress,
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED)],
        )
    return study


def leaderboard(storage: str, study_name: str = 'rules') -> list[dict]:
    """Every trial of the study, best validation accuracy first: rule, cost, accuracy, epochs, state."""
    with storage_errors(storage):
        return _leaderboard(_load(storage, study_name))


def _load(storage: str, study_name: str) -> optuna.Study:
    """The existing study ``study_name`` of an existing ``storage``; neither is ever created here."""
    backend = storage_of(storage, create=False)
    try:
        return optuna.load_study(storage=backend, study_name=study_name)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
        raise LookupError(f'no study {study_name!r} in {storage} (it holds {names or "none"})') from None


def _leaderboard(study: optuna.Study) -> list[dict]:
    rows = []
    front = {t.number for t in study.best_trials} if len(study.directions) > 1 else set()
    for trial in study.get_trials(deepcopy=False):
        params, gmacs = trial.user_attrs.get('cost', (0, 0.0))
        value = trial.values[0] if trial.values else max(trial.intermediate_values.values(), default=None)
        rows.append(
            dict(
                number=trial.number,
                state=trial.state.name.lower(),
                rule=trial.user_attrs.get('rule', ''),
                named=trial.user_attrs.get('named', ''),
                params=params,
                gmacs=gmacs,
                val_top1=value,
                epochs=len(trial.intermediate_values),
                nearest=trial.user_attrs.get('nearest', ['', 0.0]),
                refused=trial.user_attrs.get('refused', ''),
                register=trial.user_attrs.get('register'),
                trial_params=trial.params,
                pareto=trial.number in front,
            )
        )
    return sorted(rows, key=lambda r: math.inf if r['val_top1'] is None else -r['val_top1'])  # unscored last


def leaderboard_text(rows: list[dict]) -> str:
    lines = [f'{"#":>4} {"state":9} {"val top1":>8} {"epochs":>6} {"params":>8} {"GMACs":>7}  rule']
    for r in rows:
        value = f'{100 * r["val_top1"]:.2f}' if r['val_top1'] is not None else '-'
        named = f'  ({r["named"]})' if r['named'] else ''
        named += '  [Pareto front]' if r.get('pareto') else ''
        why = f'  [refused: {r["refused"]}]' if r['refused'] else ''
        lines.append(
            f'{r["number"]:4d} {r["state"]:9} {value:>8} {r["epochs"]:6d} {r["params"]:8d} '
            f'{r["gmacs"]:7.4f}  {r["rule"]}{named}{why}'
        )
    return '\n'.join(lines)


def export(storage: str, out: Path, top: int = 3, study_name: str = 'rules') -> list[Path]:
    """The ``top`` complete trials as ``register.py`` (``optnets.register`` lines) and one recipe model config
    each (``searched_<trial>.yaml``, to add after a data config: ``optnets train fit --config search_fashion_mnist
    --config searched_12.yaml``). Files of those names already in ``out`` are not overwritten."""
    with storage_errors(storage):
        study = _load(storage, study_name)
        best = sorted(
            (t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))),
            key=lambda t: -t.values[0],
        )[:top]
    if not best:
        raise LookupError(f'the study {study_name!r} in {storage} has no complete trial yet')
    out = Path(out)
    files = {out / 'register.py': _register_lines(best)}
    for trial in best:
        files[out / f'searched_{trial.number}.yaml'] = _model_config(trial)
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise FileExistsError(f'not overwriting {", ".join(existing)}: choose another --out')
    out.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)


def _register_lines(trials) -> str:
    lines = [
        '"""The best rules of an optnets search, as timm models: import this file, then timm.create_model."""',
        'import optnets',
        '',
    ]
    for trial in trials:
        kwargs = trial.user_attrs['register']
        lines.append(f'# trial {trial.number}: validation top-1 {100 * trial.values[0]:.2f}%')
        lines.append(
            f'optnets.register({f"searched_{trial.number}"!r}, {kwargs["rule"]!r}, '
            f'preset={kwargs["preset"]!r}, depth={kwargs["depth"]}, inits={kwargs["inits"]!r}, '
            f'shortcut={kwargs.get("shortcut", True)!r}, '
            + ', '.join(f'{k}={v!r}' for k, v in kwargs['model_kwargs'].items())
            + ')'
        )
    return '\n'.join(lines) + '\n'


def _model_config(trial) -> str:
    kwargs = trial.user_attrs['register']
    model = {
        'model': f'searched_{trial.number}',
        'model_kwargs': kwargs['model_kwargs'],
        'rule': {k: kwargs[k] for k in ('rule', 'preset', 'depth', 'inits')}
        | {'shortcut': kwargs.get('shortcut', True)},
    }
    header = f'# trial {trial.number} of an optnets search: validation top-1 {100 * trial.values[0]:.2f}%\n'
    return header + 'model:\n' + '\n'.join(f'  {key}: {json.dumps(value)}' for key, value in model.items()) + '\n'
