"""The training entry point: ``optnets train fit --config recipes/configs/....yaml`` (or ``python -m recipes.train``).

LightningCLI gives ``--print_config``, command-line overrides, multi-GPU and multi-node DDP
(``--trainer.devices``, ``--trainer.num_nodes``, ``--trainer.strategy ddp``), mixed precision
(``--trainer.precision bf16-mixed``) and resuming (``--ckpt_path last``). Checkpoints go to
``<trainer.default_root_dir>/checkpoints`` (``last.ckpt`` included), CSV and TensorBoard logs beside them.
EMA weights: ``--trainer.callbacks+=EMAWeightAveraging``.
"""
import os
import sys
from argparse import ArgumentError

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from .data import ImageDataModule
from .module import ImageClassifier

TRAINER_DEFAULTS = {
    'default_root_dir': 'runs/default',
}


def default_callbacks():
    return [ModelCheckpoint(save_last=True, monitor='val/top1', mode='max', filename='best-{epoch}'),
            LearningRateMonitor()]


class OptnetsCLI(LightningCLI):
    def add_arguments_to_parser(self, parser):
        parser.link_arguments('data.num_classes', 'model.num_classes', apply_on='instantiate')
        parser.link_arguments('data.in_chans', 'model.in_chans', apply_on='instantiate')

    def instantiate_trainer(self, **kwargs):
        config = self._get(self.config_init, 'trainer', default={})
        root = config.get('default_root_dir') or TRAINER_DEFAULTS['default_root_dir']
        if config.get('logger') in (None, True):  # CSV and TensorBoard logs in the run folder, a version a launch
            kwargs['logger'] = [CSVLogger(root, name='csv'), TensorBoardLogger(root, name='tensorboard')]
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            # one fixed folder per run, so that --ckpt_path last finds the last.ckpt of a previous launch
            callback.dirpath = callback.dirpath or os.path.join(root, 'checkpoints')
        return trainer


def cli_main(args=None):
    """Run the CLI; a bad model name, a missing data folder or a bad value ends in one line, before training."""
    try:
        return OptnetsCLI(ImageClassifier, ImageDataModule, subclass_mode_data=True, args=args,
                          trainer_defaults={**TRAINER_DEFAULTS, 'callbacks': default_callbacks()},
                          save_config_kwargs={'overwrite': True}, parser_kwargs={'exit_on_error': False})
    except (ArgumentError, ValueError, FileNotFoundError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f'optnets train: error: {message}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    cli_main()
