"""Train optnets models against their special-case baselines on Fashion-MNIST and report test accuracy.

Each model is trained twice per seed with the same data order and initial weights: with learnable coefficients
(``learn_coeffs=True``, starting at the special values) and with them fixed (the ResNet / DenseNet baseline).

    python -m optnets.recipes.compare --models hb_net_20_cifar --epochs 1 --train-subset 10000
"""

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch

from optnets.models import FAMILIES, family_of

from .console import quiet
from .data import FashionMNISTDataModule
from .module import ImageClassifier


class History(L.Callback):
    """Test accuracy after every epoch (Fashion-MNIST has no separate validation split)."""

    def __init__(self):
        self.top1, self.seconds = [], []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.top1.append(float(trainer.callback_metrics['val/top1']))


def train_once(model: str, model_kwargs: dict, seed: int, args: argparse.Namespace) -> dict:
    """One seeded Fashion-MNIST run of ``model`` (``model_kwargs`` go to ``timm.create_model``)."""
    L.seed_everything(seed, verbose=False)
    data = FashionMNISTDataModule(
        batch_size=args.batch_size,
        num_workers=args.workers,
        train_subset=args.train_subset,
        val_subset=args.test_subset,
    )
    module = ImageClassifier(
        model, model_kwargs, num_classes=10, in_chans=1, lr=args.lr, weight_decay=5e-4, schedule='cosine'
    )
    history = History()
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        logger=False,
        enable_checkpointing=False,
        callbacks=[history],
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_progress_bar=args.progress,
    )
    trainer.fit(module, datamodule=data)
    return dict(model=model, model_kwargs=model_kwargs, seed=seed, top1=history.top1, epoch_seconds=history.seconds)


def summarize(runs: list[dict]) -> str:
    rows = {}
    for run in runs:
        rows.setdefault((run['model'], run['variant']), []).append(run)
    lines = [f'{"model":18} {"coefficients":22} {"seeds":>5} {"test top1 (%)":>14} {"s/epoch":>8}']
    for (model, variant), group in rows.items():
        final = torch.tensor([g['top1'][-1] for g in group]) * 100
        spread = f' ± {final.std().item():.2f}' if len(group) > 1 else ''
        seconds = sum(sum(g['epoch_seconds']) for g in group) / sum(len(g['epoch_seconds']) for g in group)
        lines.append(f'{model:18} {variant:22} {len(group):5d} {final.mean().item():8.2f}{spread:>6} {seconds:8.1f}')
    return '\n'.join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        style = '-' if run['variant'] == 'learned' else '--'
        epochs = range(1, len(run['top1']) + 1)
        ax.plot(epochs, [100 * t for t in run['top1']], style, label=f'{run["model"]} {run["variant"]} s{run["seed"]}')
    ax.set(xlabel='epoch', ylabel='test top-1 (%)', title='Fashion-MNIST: learned vs fixed coefficients')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['hb_net_20_cifar'])
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--train-subset', type=int, default=10000, help='first N training images (0: all 60k)')
    parser.add_argument('--test-subset', type=int, default=0, help='first N test images (0: all 10k)')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--lr', type=float, default=0.1)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--accelerator', default='auto', help="Lightning's: auto, cpu, gpu, ...")
    parser.add_argument('--out', type=Path, help='write runs.json and curves.png here')
    parser.add_argument(
        '--progress',
        action=argparse.BooleanOptionalAction,
        default=sys.stdout.isatty(),
        help='progress bars (default: when the output is a terminal)',
    )
    args = parser.parse_args(argv)
    quiet(lightning_info=False)
    started = time.perf_counter()
    args.train_subset, args.test_subset = args.train_subset or None, args.test_subset or None
    runs = []
    for model in args.models:
        for seed in args.seeds:
            for learn in (True, False):
                family = FAMILIES[family_of(model)].special_case
                run = train_once(model, {'learn_coeffs': learn}, seed, args)
                runs.append(dict(run, variant='learned' if learn else f'{family} (fixed)'))
                print(
                    f'{model} learn_coeffs={learn} seed={seed}: test top1 {100 * runs[-1]["top1"][-1]:.2f}%', flush=True
                )
    print(summarize(runs))
    print(f'elapsed: {time.perf_counter() - started:.0f} s for {len(runs)} runs')
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / 'runs.json').write_text(
            json.dumps(dict(args=vars(args) | {'out': str(args.out)}, runs=runs), indent=1)
        )
        plot(runs, args.out / 'curves.png')
    return runs


if __name__ == '__main__':
    main()
