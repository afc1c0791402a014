"""A training run as a Hugging Face hub folder, and its upload.

``hub_folder`` writes what ``timm.create_model("local-dir:DIR", pretrained=True)`` and the hub need: the weights and
``config.json`` by timm's own ``save_for_hf`` (with the model arguments, e.g. ``learn_coeffs``), the model card
as ``README.md``, and the run's LightningCLI ``config.yaml`` and ``metrics.csv``. ``publish`` uploads the folder
with huggingface_hub.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from typing import TYPE_CHECKING

from huggingface_hub import HfApi
from huggingface_hub.utils import validate_repo_id

from ..families import family_of
from .export import model_weights, read_checkpoint

if TYPE_CHECKING:
    import torch


def hub_folder(
    checkpoint: str | os.PathLike, directory: str | os.PathLike, card: str | os.PathLike | None = None
) -> dict:
    """Write the hub folder of a recipe checkpoint into ``directory`` (new, or an empty folder); returns the model
    arguments stored in its config.json (num_classes is stored beside them). A folder that holds anything is
    refused: nothing of the user's is ever replaced."""
    import timm
    from timm.models import save_for_hf

    checkpoint, directory = Path(checkpoint), Path(directory)
    if directory.exists() and not (directory.is_dir() and not any(directory.iterdir())):
        raise ValueError(
            f'{directory} exists and is not an empty folder: give a new or empty one (nothing was written)'
        )
    if not directory.parent.is_dir():
        raise ValueError(f'{directory.parent} is not a folder: create it first (nothing was written)')
    ckpt = read_checkpoint(checkpoint)
    hparams = ckpt.get('hyper_parameters', {})
    if 'model' not in hparams:
        raise ValueError(f'{checkpoint} is not a checkpoint of `optnets train` (no model name)')
    num_classes = hparams.get('num_classes', 1000)
    model_args = dict(in_chans=hparams.get('in_chans', 3), **(hparams.get('model_kwargs') or {}))
    try:
        model = timm.create_model(hparams['model'], num_classes=num_classes, **model_args)
    except TypeError as error:
        raise ValueError(f'{checkpoint}: its model {hparams["model"]} does not take {model_args} ({error})') from None
    model.load_state_dict(model_weights(ckpt))
    data = dict(ckpt.get('data_config') or {})
    dataset = data.pop('dataset', None)
    cfg = {k: v for k, v in model.pretrained_cfg.items() if k != 'tag'}  # the run's weights, not the zoo's tag
    model.pretrained_cfg = {**cfg, **data, 'num_classes': num_classes}  # the run's
    staging = Path(tempfile.mkdtemp(prefix=directory.name + '.', dir=directory.parent))
    try:  # written whole, then moved: an error leaves nothing half-written under the final name
        save_for_hf(model, staging, model_args=model_args, safe_serialization=True)
        without_num_classes_in_model_args(staging / 'config.json')
        run = checkpoint.parent.parent
        for name in ('config.yaml', 'metrics.csv'):
            found = sorted(run.rglob(name), key=lambda p: p.stat().st_mtime)
            if found:
                shutil.copy(found[-1], staging / name)
        if card is not None:
            shutil.copy(card, staging / 'README.md')
        else:
            (staging / 'README.md').write_text(run_card(hparams['model'], model_args, dataset, staging, model))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # as any folder the user makes (mkdtemp's is private)
        if directory.exists():  # empty: fill it
            for item in staging.iterdir():
                item.rename(directory / item.name)
        else:
            staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the staging folder this call made, if still there
    return model_args


def without_num_classes_in_model_args(config: Path) -> None:
    """Drop ``num_classes`` from a timm ``config.json``'s ``model_args`` (timm's ``save_for_hf`` writes it there and
    as the top-level field): transformers' timm wrapper passes the top-level value itself, and twice is a
    TypeError. timm reads the top-level field too, so its own loading does not change."""
    content = json.loads(config.read_text())
    content.get('model_args', {}).pop('num_classes', None)
    config.write_text(json.dumps(content, indent=2) + '\n')


def run_card(name: str, model_args: dict, dataset: str | None, folder: Path, model: torch.nn.Module) -> str:
    """A model card from the run itself: timm's metadata, the data it saw, its last validation metrics (from
    ``metrics.csv``), how to load it, and the paper of its family."""
    import csv

    metrics = {}
    if (folder / 'metrics.csv').is_file():
        with open(folder / 'metrics.csv') as f:
            for row in csv.DictReader(f):
                metrics.update({k: v for k, v in row.items() if k.startswith('val/') and v})
    try:
        family = f'- {family_of(name)}\n'  # a zoo family's tag
    except LookupError:
        family = ''  # a rule registered by its user belongs to no family
    datasets = f'datasets:\n- {dataset}\n' if dataset and dataset != 'synthetic' else ''
    shown = ''.join(f'| {k} | {float(v):.4f} |\n' for k, v in sorted(metrics.items()))
    table = f'| metric | value |\n|---|---|\n{shown}' if shown else 'No validation metrics were logged.\n'
    size = 'x'.join(map(str, model.pretrained_cfg.get('input_size', ())))
    arguments = ', '.join(f'{k}={v!r}' for k, v in {'num_classes': model.num_classes, **model_args}.items())
    return f"""---
license: apache-2.0
library_name: timm
tags:
- image-classification
- timm
- optnets
{family}{datasets}---

# {name}, trained with optnets

`{name}` ({arguments}) trained by `optnets train` on
{dataset or 'unrecorded data'}; input {size}, normalised with mean {model.pretrained_cfg.get('mean')} and std
{model.pretrained_cfg.get('std')}. `config.yaml` is the run's full configuration and `metrics.csv` its log.

## Validation metrics (the run's last logged values)

{table}
## Use

```python
import timm, optnets  # optnets registers the architecture with timm: without it, timm does not know the name
model = timm.create_model("local-dir:PATH_TO_THIS_FOLDER", pretrained=True)  # or hf-hub:USER/NAME once published
```

With transformers (its timm wrapper builds the model through timm, so `import optnets` comes first here too):

```python
import optnets
from transformers import AutoImageProcessor, AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained("PATH_TO_THIS_FOLDER")
processor = AutoImageProcessor.from_pretrained("PATH_TO_THIS_FOLDER")  # timm's eval transform for this model
```

## Citation

Li, Yang, Chen and Lin, *Optimization Algorithm Inspired Deep Neural Network Structure Design*, ACML 2018.
"""


def publish(directory: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Upload a hub folder to ``repo_id`` (created if missing); returns the commit's URL."""
    validate_repo_id(repo_id)  # a ValueError that says what a repo id is
    directory = Path(directory)
    if not (directory / 'config.json').is_file():
        raise FileNotFoundError(
            f'{directory} is not a hub folder (no config.json): make one with `optnets export CKPT --hub-dir DIR`'
        )
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        return str(api.upload_folder(folder_path=str(directory), repo_id=repo_id, commit_message='optnets publish'))
    except Exception as error:  # noqa: BLE001 - the HTTP client and the hub raise many kinds: one line for each
        raise ConnectionError(
            f'could not publish to {repo_id} ({type(error).__name__}: '
            f'{str(error).strip().splitlines()[0] if str(error).strip() else "no detail"})'
        ) from None
