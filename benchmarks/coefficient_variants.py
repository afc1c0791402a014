"""Which way of learning the heavy-ball coefficients helps? Chosen on a validation split, never on test images.

    python benchmarks/coefficient_variants.py --out benchmarks/results/coefficient_variants

Each variant trains ResNet-20's skeleton on the first ``--train`` of Fashion-MNIST's first 55k training images and
is scored on the last 5k (the holdout, read as test images are); the test images are never loaded. Every variant
starts at ResNet-20 (b1 = 1, b2 = 0, or c = 0) with the same weights and data order per seed. A finished run is
kept in ``runs.json`` (and ``table.md``) and skipped when the command is run again, so a cut run resumes at the
next variant.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L

from optnets.recipes.compare import History
from optnets.recipes.console import quiet
from optnets.recipes.data import FashionMNISTDataModule
from optnets.recipes.module import ImageClassifier

HOLDOUT = 5000
VARIANTS = {  # name -> (model, model_kwargs, ImageClassifier arguments), what it is
    'resnet_20': ('hb_net_20_cifar', {'learn_coeffs': False}, {}),  # the coefficients fixed at ResNet's
    'learned': ('hb_net_20_cifar', {}, {}),  # HB-Net-20 as the zoo has it: the weights' lr and schedule
    'coeff_lr_0.1': ('hb_net_20_cifar', {}, {'coeff_lr_scale': 0.1}),  # their own, ten times smaller, rate
    'per_channel': ('hb_net_20_cifar', {'coeff_shape': 'channel'}, {}),  # b1, b2 per channel and step
    'identity_gain': ('lm_net_20_cifar', {}, {}),  # b1 + b2 = 1: x[k+1] = T(x[k]) + (1-c) x[k] + c x[k-1]
}


def train(variant: str, seed: int, args: argparse.Namespace) -> dict:
    model, model_kwargs, module_kwargs = VARIANTS[variant]
    L.seed_everything(seed, verbose=False)
    data = FashionMNISTDataModule(batch_size=128, num_workers=0, train_subset=args.train, holdout=HOLDOUT)
    module = ImageClassifier(
        model, model_kwargs, num_classes=10, in_chans=1, lr=0.1, weight_decay=5e-4, schedule='cosine', **module_kwargs
    )
    history = History()
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        callbacks=[history],
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
    )
    trainer.fit(module, datamodule=data)
    coefficients = {n: p.detach().flatten().tolist() for n, p in module.model.named_coefficients()}
    return dict(variant=variant, seed=seed, val_top1=history.top1, epoch_seconds=history.seconds, coeffs=coefficients)


def table(runs: list[dict]) -> str:
    lines = ['| variant | seeds | validation top-1 (%) | s/epoch |', '|---|---|---|---|']
    for variant in VARIANTS:
        group = [r for r in runs if r['variant'] == variant]
        if not group:
            continue
        final = [100 * r['val_top1'][-1] for r in group]
        mean = sum(final) / len(final)
        spread = (sum((f - mean) ** 2 for f in final) / (len(final) - 1)) ** 0.5 if len(final) > 1 else None
        seconds = sum(sum(r['epoch_seconds']) for r in group) / sum(len(r['epoch_seconds']) for r in group)
        shown = f'{mean:.2f}' + (f' ± {spread:.2f}' if spread is not None else '')
        lines.append(f'| `{variant}` | {len(group)} | {shown} | {seconds:.1f} |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--train', type=int, default=10000, help='first N of the 55k training images')
    parser.add_argument('--out', type=Path, required=True, help='runs.json is kept here')
    args = parser.parse_args(argv)
    quiet(lightning_info=False)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / 'runs.json'
    settings = dict(epochs=args.epochs, train=args.train, holdout=HOLDOUT)
    record = json.loads(path.read_text()) if path.exists() else dict(settings=settings, runs=[])
    if record['settings'] != settings:
        sys.exit(f'{path} holds runs with {record["settings"]}, not {settings}: choose another --out')
    for seed in args.seeds:
        for variant in args.variants:
            if any(r['variant'] == variant and r['seed'] == seed for r in record['runs']):
                continue
            started = time.perf_counter()
            record['runs'].append(train(variant, seed, args))
            path.write_text(json.dumps(record, indent=1))
            (args.out / 'table.md').write_text(table(record['runs']) + '\n')
            top1 = 100 * record['runs'][-1]['val_top1'][-1]
            print(f'{variant} seed {seed}: validation top-1 {top1:.2f}% ({time.perf_counter() - started:.0f} s)')
    (args.out / 'table.md').write_text(table(record['runs']) + '\n')
    print(table(record['runs']))


if __name__ == '__main__':
    main()
