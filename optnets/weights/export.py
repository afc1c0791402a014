"""Lightning checkpoint -> safetensors for ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=OUT))``: the LightningModule's ``model.`` prefix is stripped, and the EMA
weights are taken when the run averaged them (Lightning's EMA callback stores the average as the checkpoint's
``state_dict``, the raw weights under ``current_model_state``)."""

import os
import pickle
import zipfile
from pathlib import Path
from typing import Iterable

import torch
from safetensors.torch import save_file

PREFIX = 'model.'


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole file in torch.save's zip format (a truncated one lacks its central directory)."""
    return Path(path).is_file() and zipfile.is_zipfile(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` a training checkpoint (tensors and plain data only); a file that is not one whole checkpoint
    (missing, empty, truncated, another format) raises one ``ValueError`` that names it."""
    if not is_checkpoint_file(path):
        raise ValueError(f'{path}: not a checkpoint (missing, empty, truncated or not written by torch.save)')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise ValueError(f'{path}: not a readable checkpoint ({str(error).strip().splitlines()[0]})') from None
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise ValueError(f'{path}: a torch file but not a training checkpoint (no state_dict)')
    state = ckpt['state_dict']
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f'{path}: its state_dict is not a mapping of names to tensors')
    return ckpt


def model_weights(ckpt: dict) -> dict:
    """The timm model's state dict inside a recipe checkpoint (its EMA average when the run kept one)."""
    state = ckpt['state_dict']
    weights = {k[len(PREFIX) :]: v.contiguous() for k, v in state.items() if k.startswith(PREFIX)}
    weights = {k.replace('_orig_mod.', ''): v for k, v in weights.items()}  # torch.compile'd modules
    if not weights:
        raise ValueError(f'the checkpoint holds no "{PREFIX}*" weights: is it an optnets recipe checkpoint?')
    bad = first_non_finite(weights.items())
    if bad is not None:
        raise ValueError(f'the checkpoint holds non-finite values ({bad}): it is not a state to publish')
    return weights


def first_non_finite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating tensor of ``(name, tensor)`` pairs holding a NaN or inf, or None; one fused
    check (one host sync) when all are finite."""
    floats = [(name, t.detach()) for name, t in named if t.is_floating_point()]
    if not floats or bool(torch.stack([t.isfinite().all() for _, t in floats]).all()):
        return None
    return next(name for name, t in floats if not t.isfinite().all())


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write the model weights of ``checkpoint`` to ``out``, a new file unless ``overwrite``; returns the metadata
    stored with them."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f'{out} is a folder: give the .safetensors file to write, or --hub-dir {out}')
    if out.exists() and not overwrite:
        raise ValueError(f'{out} exists: give a new file name, or --force to replace it (nothing was written)')
    if not out.parent.is_dir():
        raise ValueError(f'{out.parent} is not a folder: create it first (nothing was written)')
    ckpt = read_checkpoint(checkpoint)
    weights = model_weights(ckpt)
    hparams = ckpt.get('hyper_parameters', {})
    metadata = {
        key: str(hparams[key]) for key in ('model', 'num_classes', 'in_chans', 'model_kwargs') if key in hparams
    }
    metadata['ema'] = str('current_model_state' in ckpt)
    partial = out.with_name(out.name + '.partial')
    try:
        save_file(weights, str(partial), metadata=metadata)
        partial.replace(out)  # never leaves a half-written file under the final name
    finally:
        partial.unlink(missing_ok=True)
    return metadata
