"""What makes a training run lose nothing and never be silently wrong, as Lightning plug-ins.

- ``AtomicCheckpointIO``: a checkpoint is written whole under its name or not at all (a temporary file, renamed).
- ``ExactResume``: the Python, NumPy and torch random states travel in the checkpoint and are set again when
  training restarts, so mixup, dropout and drop-path after a resume draw what the uninterrupted run drew (the
  data pipeline draws from its own per-sample seeds: ``data.SeededSampler``); and the loader's position in the
  checkpoint is applied, which Lightning skips when ``configure_optimizers`` read ``estimated_stepping_batches``.
- ``CheckpointOnSIGTERM``: SIGTERM (a scheduler's preemption) ends the run at the next batch boundary with
  ``last.ckpt`` holding that state; the CLI then exits 143, so the scheduler requeues instead of counting a success.
- ``StopOnNonFinite``: a non-finite loss, weight or buffer ends the run (``NonFiniteError``) before a checkpoint of that
  state is written; the checkpoints already on disk stay as they were.
"""

import os
import random
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loops import _FitLoop
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from optnets.weights.export import first_non_finite


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or weight."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a read-only folder); the previous one is intact."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with the file written to ``NAME.partial`` and renamed over ``NAME``: a kill
    mid-write leaves the previous checkpoint intact and no half-written one under the final name; a failed write
    (a full disk) is one ``CheckpointWriteError`` that names the file and the free space. ``remove_partial``
    clears what a killed save left behind."""

    def save_checkpoint(self, checkpoint: dict, path: str | os.PathLike, storage_options: object | None = None) -> None:
        path = Path(path)
        partial = path.with_name(path.name + PARTIAL)
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
            os.replace(partial, path)
        except OSError as error:
            free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
            raise CheckpointWriteError(
                f'could not write {path} ({error.strerror or error}; {free / 2**20:.0f} MiB '
                f'free there): the previous checkpoint is intact'
            ) from error
        finally:
            partial.unlink(missing_ok=True)

    @staticmethod
    def remove_partial(folder: str | os.PathLike) -> None:
        """Remove the ``*.ckpt.partial`` files of saves killed mid-write (this writer's own, by their name)."""
        for partial in Path(folder).glob(f'*.ckpt{PARTIAL}'):
            partial.unlink(missing_ok=True)


PARTIAL = '.partial'


LOADER_PRIVATES = (
    '_combined_loader',
    '_combined_loader_states_to_load',
    '_load_combined_loader_states',
    '_data_fetcher',
)
"""The fit loop's private members ``apply_restored_loader_position`` uses (tests/test_faults.py checks that
Lightning still has them)."""


def apply_restored_loader_position(loop: _FitLoop) -> bool:
    """Apply a restored train loader's saved position, if Lightning left it unapplied; whether it did.

    Waits for Lightning #20550 (the fix proposed upstream: PR #21765): when ``configure_optimizers`` reads
    ``trainer.estimated_stepping_batches``, the train loader is set up before the checkpoint is restored, and its
    saved position is never applied. This applies it and starts the loader again from it, as Lightning's own path
    does; it is the one place that reaches into the fit loop's privates (``LOADER_PRIVATES``).

    A checkpoint written on an epoch's last batch (``every_n_train_steps`` dividing the epoch) is the other case:
    Lightning counts that epoch as done and goes on to the next, but the saved position is the old epoch's end, and
    applied (by Lightning or here) it leaves the next epoch with no batch. There the position is dropped and the
    loader starts the next epoch from its beginning."""
    if loop.epoch_loop.restarted_on_train_batch_end and loop.epoch_loop.batch_progress.is_last_batch:
        loop._combined_loader_states_to_load = []
        for loader in loop._combined_loader.flattened:  # the next epoch's order, before its iterator draws it
            _set_sampler_epoch(loader, loop.epoch_progress.current.processed)
        iter(loop._data_fetcher)
        return True
    if not (loop.restarting and loop._combined_loader_states_to_load):
        return False
    loop._load_combined_loader_states()
    iter(loop._data_fetcher)
    return True


class ExactResume(L.Callback):
    """The global random states in the checkpoint, and both they and the loader's saved position applied when
    training restarts, after the data loading was set up."""

    def __init__(self):
        self.pending = None

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            'torch': torch.get_rng_state(),
            'python': random.getstate(),  # plain types: weights_only loads them
            'numpy': [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        }

    def load_state_dict(self, state: dict) -> None:
        self.pending = state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        apply_restored_loader_position(trainer.fit_loop)
        if self.pending is not None:
            kind, keys, pos, has_gauss, gauss = self.pending['numpy']
            torch.set_rng_state(self.pending['torch'])
            random.setstate(self.pending['python'])
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            self.pending = None


class CheckpointOnSIGTERM(L.Callback):
    """On Lightning's SIGTERM exit, save ``last.ckpt`` in the folder of the checkpoint callback that keeps one."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        keeper = next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, 'save_last', False)), None)
        if keeper is not None and keeper.dirpath:
            trainer.save_checkpoint(os.path.join(keeper.dirpath, keeper.CHECKPOINT_NAME_LAST + keeper.FILE_EXTENSION))


class StopOnNonFinite(L.Callback):
    """After every training step, check the loss, every parameter and every buffer (BatchNorm's running
    statistics) in one fused check, one host sync a step; raise ``NonFiniteError`` on NaN or inf. Lightning runs
    checkpoint callbacks after all others, so the failing state is never saved."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        loss = outputs.get('loss') if isinstance(outputs, dict) else outputs
        named = [('the training loss', loss)] if isinstance(loss, torch.Tensor) else []
        named += [(f'parameter {n}', t) for n, t in pl_module.named_parameters()]
        named += [(f'buffer {n}', t) for n, t in pl_module.named_buffers()]
        bad = first_non_finite(named)
        if bad is None:
            return
        raise NonFiniteError(
            f'{bad} became non-finite at step {trainer.global_step}: lower --model.lr (the '
            'checkpoints on disk hold the last finite state)'
        )
