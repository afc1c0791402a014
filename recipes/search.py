"""``optnets search``: a study over update rules, each trial trained by the Lightning recipe.

    optnets search --config search_fashion_mnist --trials 60 --storage sqlite:///search.db
    optnets search show --storage sqlite:///search.db
    optnets search export --storage sqlite:///search.db --top 3 --out found/

Every option of ``optnets train fit`` (``--data.*``, ``--trainer.*``, ``--model.*``) passes through to each trial;
the trial sets the model. Run the same command again to resume, or on other machines against one database to
share the study.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import lightning as L

from optnets.search import RuleSpace, export, leaderboard, run
from optnets.search.study import leaderboard_text, register_kwargs

from .console import quiet
from .reliability import NonFiniteError
from .train import make_cli

if TYPE_CHECKING:
    import optuna


class ReportToTrial(L.Callback):
    """Reports ``monitor`` after each validation epoch to the Optuna trial, and stops the run when the pruner
    says so (the trial is then marked pruned); a study of several objectives is neither reported to nor pruned
    (Optuna does neither), only the best value kept."""

    def __init__(self, trial: optuna.Trial, monitor: str = 'val/top1'):
        self.trial, self.monitor, self.pruned, self.best = trial, monitor, False, float('-inf')

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.best = max(self.best, value)
        if len(self.trial.study.directions) > 1:
            return
        self.trial.report(value, trainer.current_epoch + 1)
        if self.trial.should_prune():
            self.pruned = trainer.should_stop = True


class RecipeObjective:
    """Train a point of the space with ``optnets train fit --config CONFIG OVERRIDES``, its rule as the model
    (``searched_<trial>``), its logs and checkpoints in ``<root_dir>/trial_<n>``; the best validation accuracy
    is the trial's value."""

    def __init__(
        self, config: str = 'search_fashion_mnist', overrides: Sequence[str] = (), root_dir: str = 'runs/search'
    ):
        self.config, self.overrides, self.root_dir = config, list(overrides), root_dir

    def __call__(self, trial, point, space: RuleSpace) -> float:
        import optuna

        spec = register_kwargs(point, space)
        model_kwargs = spec.pop('model_kwargs')
        cli = make_cli(
            [
                '--config',
                self.config,
                *self.overrides,
                '--model.model',
                f'searched_{trial.number}',
                '--model.rule',
                json.dumps(spec),
                '--model.model_kwargs',
                json.dumps(model_kwargs),
                '--trainer.default_root_dir',
                f'{self.root_dir}/trial_{trial.number}',
            ],
            run=False,
        )
        report = ReportToTrial(trial)
        cli.trainer.callbacks.append(report)
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        except NonFiniteError as error:
            trial.set_user_attr('failed', str(error))
            return float('nan')  # Optuna marks the trial failed and goes on
        if report.pruned:
            raise optuna.TrialPruned(f'pruned after epoch {cli.trainer.current_epoch}')
        if report.best == float('-inf'):  # e.g. fewer training images than a batch: nothing was trained
            trial.set_user_attr('failed', 'no validation epoch ran')
            return float('nan')
        return report.best


OVERRIDES = ('--data', '--trainer', '--model', '--seed_everything', '--optimizer', '--lr_scheduler')


def main(args: argparse.Namespace, overrides: list[str]) -> None:
    """``optnets search`` (the arguments ``optnets.cli`` parsed; ``overrides`` go to each trial)."""
    if args.action == 'show':
        print(leaderboard_text(leaderboard(args.storage, args.study)))
        return
    if args.action == 'export':
        for path in export(args.storage, Path(args.out), args.top, args.study):
            print(f'wrote {path}')
        return
    stray = [arg for arg in overrides if arg.startswith('-') and arg.split('=')[0].split('.')[0] not in OVERRIDES]
    if stray:
        raise ValueError(
            f'unrecognized arguments: {" ".join(stray)} (a trial takes --data.*, --trainer.*, '
            '--model.* as optnets train fit does)'
        )
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    quiet(lightning_info=False)
    space = RuleSpace(window=args.window, depths=args.depths, width_scales=args.width_scales)
    objective = RecipeObjective(args.config, overrides, args.root_dir)
    study = run(
        space,
        objective,
        args.trials,
        args.storage,
        args.study,
        args.seed,
        progress,
        sampler=args.sampler,
        builtins=args.builtins,
        objectives=('val_top1', 'gmacs') if args.pareto else ('val_top1',),
    )
    print(leaderboard_text(leaderboard(args.storage, args.study)[:10]))
    print(
        f'{len(study.trials)} trials in study {args.study!r} of {args.storage}; all of them: optnets search show '
        f'--storage {args.storage}'
    )
