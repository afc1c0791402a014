"""The training entry point: ``optnets train fit --config fashion_mnist`` (a shipped config by name, or any
YAML path), or ``python -m optnets.recipes.train``.

LightningCLI gives ``--print_config``, command-line overrides, multi-GPU and multi-node DDP
(``--trainer.devices``, ``--trainer.num_nodes``, ``--trainer.strategy ddp``), mixed precision
(``--trainer.precision bf16-mixed``) and resuming (``--ckpt_path last``). Checkpoints go to
``<trainer.default_root_dir>/checkpoints``, CSV and TensorBoard logs beside them: ``best-*.ckpt`` by ``val/top1``
(``--best.*`` sets that ModelCheckpoint) and ``last.ckpt``, the latest state, written at each epoch's end (or each
``--latest.every_n_train_steps``), on SIGTERM (then the exit code is 143) and never half-written. A resumed run
continues exactly where the interrupted one was (``reliability``, ``data``); a non-finite loss or weight stops a
run with exit code 1 before it is saved. EMA weights: ``--trainer.callbacks+=EMAWeightAveraging``. The model is
``optnets.recipes.module.ImageClassifier`` unless a config names another LightningModule
(``optnets.recipes.lpom_module.LPOMClassifier`` trains without backpropagation).
"""

import os
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path

import lightning as L

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning.fabric.utilities.exceptions import MisconfigurationException

from optnets.weights.export import read_checkpoint
from .console import quiet
from .data import ImageDataModule
from .reliability import (
    AtomicCheckpointIO,
    CheckpointOnSIGTERM,
    CheckpointWriteError,
    ExactResume,
    NonFiniteError,
    StopOnNonFinite,
)
from . import lpom_module, module  # noqa: F401  (the LightningModules a config may name)

TRAINER_DEFAULTS = {
    'default_root_dir': 'runs/default',
}
SIGTERM_EXIT = 143  # 128 + SIGTERM: what a scheduler reads as "terminated, requeue"


def default_callbacks() -> list[L.Callback]:
    return [LearningRateMonitor(), ExactResume(), CheckpointOnSIGTERM(), StopOnNonFinite()]


class OptnetsCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Two checkpoint callbacks: the best by val/top1, and the latest state as last.ckpt from a callback of its
        # own (Lightning writes last.ckpt only when its callback saves a top-k checkpoint, so a last.ckpt that shares
        # the monitored callback goes stale whenever validation does not improve).
        parser.add_lightning_class_args(ModelCheckpoint, 'best')
        parser.set_defaults({'best.monitor': 'val/top1', 'best.mode': 'max', 'best.filename': 'best-{epoch}'})
        parser.add_lightning_class_args(ModelCheckpoint, 'latest')
        parser.set_defaults({'latest.save_last': True, 'latest.filename': 'latest-{epoch}-{step}'})
        parser.set_defaults({'model': {'class_path': 'optnets.recipes.module.ImageClassifier'}})
        parser.link_arguments('data.num_classes', 'model.init_args.num_classes', apply_on='instantiate')
        parser.link_arguments('data.in_chans', 'model.init_args.in_chans', apply_on='instantiate')

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        config = self._get(self.config_init, 'trainer', default={})
        root = config.get('default_root_dir') or TRAINER_DEFAULTS['default_root_dir']
        if config.get('logger') in (None, True):  # CSV and TensorBoard logs in the run folder, a version a launch
            kwargs['logger'] = [CSVLogger(root, name='csv'), TensorBoardLogger(root, name='tensorboard')]
        if not config.get('plugins'):
            kwargs['plugins'] = [AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            # one fixed folder per run, so that --ckpt_path last finds the last.ckpt of a previous launch
            callback.dirpath = callback.dirpath or os.path.join(root, 'checkpoints')
            AtomicCheckpointIO.remove_partial(callback.dirpath)
        return trainer

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)  # a bad --ckpt_path is refused before LightningCLI reads it
        subcommand = self.config.get('subcommand')
        ckpt = self.config.get(subcommand).get('ckpt_path') if subcommand else None
        if ckpt == 'last':  # the run folder's last.ckpt, where there is one (else Lightning starts afresh)
            root = self.config.get(subcommand).get('trainer', {}).get('default_root_dir')
            last = Path(root or TRAINER_DEFAULTS['default_root_dir'], 'checkpoints', 'last.ckpt')
            ckpt = str(last) if last.exists() else None
        if ckpt and ckpt not in ('best', 'hpc'):
            try:
                read_checkpoint(ckpt)  # tensors and plain data only, as Lightning will load it
            except ValueError as error:
                raise ValueError(
                    f"--ckpt_path {error}; `--ckpt_path last` resumes from the run folder's last.ckpt"
                ) from None


CONFIGS = Path(__file__).with_name('configs')


def shipped_configs(args: list[str]) -> list[str]:
    """``--config NAME`` (``fashion_mnist``, ``models/hb_net_56``) names a config shipped with the package when no
    file of that name exists; paths work as they are."""

    def resolve(value: str) -> str:
        shipped = CONFIGS / f'{value}.yaml'
        return str(shipped) if not os.path.exists(value) and shipped.is_file() else value

    resolved = list(args)
    for i, arg in enumerate(resolved):
        if arg.startswith('--config='):
            resolved[i] = '--config=' + resolve(arg.removeprefix('--config='))
        elif i and resolved[i - 1] == '--config':
            resolved[i] = resolve(arg)
    return resolved


def make_cli(args: list[str], run: bool = True) -> OptnetsCLI:
    """The recipe's LightningCLI over ``args`` (shipped config names resolved); ``run=False`` parses and
    instantiates without running a subcommand, for callers that drive the trainer (the search, benchmarks)."""
    # `optnets train` passes its arguments and leaves sys.argv alone, on purpose: DDP's launcher re-runs sys.argv
    warnings.filterwarnings('ignore', message="LightningCLI's args parameter is intended")
    return OptnetsCLI(
        L.LightningModule,
        ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=shipped_configs(args),
        run=run,
        trainer_defaults={**TRAINER_DEFAULTS, 'callbacks': default_callbacks()},
        save_config_kwargs={'overwrite': True},
        parser_kwargs={'exit_on_error': False},
    )


def cli_main(args: list[str] | None = None) -> LightningCLI | None:
    """Run the CLI; a bad model name, a missing data folder or a bad value ends in one line, before training."""
    quiet()
    try:
        return make_cli(sys.argv[1:] if args is None else args)
    except SIGTERMException:
        print('optnets train: stopped by SIGTERM; resume with --ckpt_path last', file=sys.stderr)
        sys.exit(SIGTERM_EXIT)
    except (NonFiniteError, CheckpointWriteError) as error:
        print(f'optnets train: error: {error}', file=sys.stderr)
        sys.exit(1)
    except (ArgumentError, ValueError, FileNotFoundError, MisconfigurationException) as error:
        print(f'optnets train: error: {one_line(error)}', file=sys.stderr)
        sys.exit(2)


def one_line(error: Exception) -> str:
    """A configuration error as one line: the innermost message, after the key jsonargparse names.

    jsonargparse raises its errors as text only, the model's or data module's own error chained as the cause,
    and names the key in a line ``Parser key "...": ...``: this reads that text (tests/test_cli.py feeds it real
    errors, so a change of wording upstream fails there)."""
    chain = [error]
    while chain[-1].__cause__ is not None:  # jsonargparse wraps the model's or data module's own error
        chain.append(chain[-1].__cause__)
    firsts = [str(e).strip().splitlines()[0] for e in chain if str(e).strip()] or [type(error).__name__]
    where = next((line for line in firsts if line.startswith('Parser key')), '')
    message = f'{where} {firsts[-1]}' if where and where != firsts[-1] else firsts[-1]
    if 'not accepted' in message or 'unrecognized arguments' in message:
        message += ' (`optnets train fit --help` lists the accepted keys)'
    return message


if __name__ == '__main__':
    cli_main()
