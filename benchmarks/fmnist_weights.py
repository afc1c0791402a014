"""Publish the Fashion-MNIST weights trained by recipes/configs/fashion_mnist_full.yaml, with their measurements.

    python benchmarks/fmnist_weights.py --runs RUNS --epoch 11 --seed-runs 1=RUNS_SEED1 \
        --out benchmarks/results/fmnist_weights

RUNS holds the two runs of the config's header (hb_net_20/ with learned coefficients, resnet_20/ with them fixed).
For each: the epoch's checkpoint is exported to ``optnets/weights/files/<tag>.safetensors`` and entered in the
manifest with its sha256, size and cfg; the shipped file is then loaded through timm's pretrained path and scored on
all 10k test images; the curves, the learned coefficients and ``runs.json`` go to ``--out`` (model cards are made
from that JSON: ``python tools/model_cards.py``). The last epoch is published, never a best-on-test one.
``--seed-runs SEED=DIR`` adds the same two runs with another ``--seed_everything``: scored the same way at the same
epoch, they give the spread over seeds (the published weights stay those of RUNS).
"""

import argparse
import csv
import json
from pathlib import Path

import timm
import torch

import optnets  # noqa: F401
from optnets.weights import export_checkpoint, registry
from optnets.models.checkpoints import keep_missing_coefficients
from optnets.models.facts import gmacs
from optnets.weights.export import model_weights, read_checkpoint
from optnets.constants import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from optnets.recipes.data import FashionMNISTDataModule

ROOT = Path(__file__).resolve().parents[1]
LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
RUNS = {  # tag -> (run folder, what it is)
    'hb_net_20_cifar.fmnist': ('hb_net_20', 'HB-Net-20, learned heavy-ball coefficients'),
    'hb_net_20_cifar.fmnist_resnet': ('resnet_20', 'ResNet-20 (the same network, coefficients fixed at b1=1, b2=0)'),
}
CONFIG = 'recipes/configs/fashion_mnist_full.yaml'
COMMANDS = {
    'hb_net_20': f'OMP_NUM_THREADS=1 optnets train fit --config {CONFIG}',
    'resnet_20': f'OMP_NUM_THREADS=1 optnets train fit --config {CONFIG} --model.init_args.model_kwargs '
    "'{learn_coeffs: false}' --trainer.default_root_dir runs/fmnist_full/resnet_20",
}


def checkpoint_at(run: Path, epoch: int) -> Path:
    """The checkpoint a run wrote at the end of ``epoch`` (``latest-epoch=E-step=S.ckpt``, or ``epoch=E.ckpt`` as
    the recipe named them before it kept a separate latest-state callback)."""
    found = [*run.glob(f'checkpoints/latest-epoch={epoch}-step=*.ckpt'), *run.glob(f'checkpoints/epoch={epoch}.ckpt')]
    if len(found) != 1:
        raise FileNotFoundError(f'{run}: expected one checkpoint of epoch {epoch}, found {found}')
    return found[0]


def load_run(model, run: Path, epoch: int):
    """``model`` with the weights ``run`` had at the end of ``epoch`` (a fixed-coefficient run's are kept)."""
    weights = model_weights(read_checkpoint(checkpoint_at(run, epoch)))
    model.load_state_dict(keep_missing_coefficients(weights, model))
    return model


def curves(run: Path, last: int) -> dict:
    """Per epoch up to ``last``: test top-1 (the recipe validates on the test set) and mean training loss."""
    rows = [r for path in sorted(run.glob('csv/*/metrics.csv')) for r in csv.DictReader(open(path))]
    top1 = {int(r['epoch']): float(r['val/top1']) for r in rows if r.get('val/top1')}
    loss = {int(r['epoch']): float(r['train/loss_epoch']) for r in rows if r.get('train/loss_epoch')}
    epochs = [e for e in sorted(top1) if e <= last]
    return {'epoch': epochs, 'test_top1': [top1[e] for e in epochs], 'train_loss': [loss.get(e) for e in epochs]}


@torch.no_grad()
def test_top1(model, images: int = 10000) -> float:
    """Top-1 on the first ``images`` of the 10k test images (tests/test_weights.py checks the first 1000)."""
    data = FashionMNISTDataModule(batch_size=500, num_workers=0, val_subset=images)
    data.prepare_data()
    data.setup()
    correct = total = 0
    for x, y in data.val_dataloader():
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    assert total == images
    return correct / total


def coefficients(model) -> dict:
    return {name.removeprefix('stages.'): p.detach().flatten().tolist() for name, p in model.named_coefficients()}


def plot(results: dict, out: Path):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for tag, r in results.items():
        ax.plot(
            [e + 1 for e in r['curves']['epoch']],
            [100 * v for v in r['curves']['test_top1']],
            marker='o',
            label=RUNS[tag][1].split(' (')[0],
        )
    ax.set(xlabel='epoch', ylabel='test top-1 (%)', title='Fashion-MNIST, 60k images, seed 0')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'curves.png', dpi=120)
    learned = results['hb_net_20_cifar.fmnist']['coefficients']
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, special in (('b1', 1.0), ('b2', 0.0)):
        values = [v for key in sorted(learned) if key.endswith(name) for v in learned[key]]
        ax.plot(range(1, len(values) + 1), values, marker='o', label=f'{name} learned')
        ax.axhline(special, ls='--', lw=1, color='gray')
    ax.set(xlabel='step (stages in order)', ylabel='coefficient', title='HB-Net-20 coefficients (dashed: ResNet)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'coefficients.png', dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=Path, required=True)
    parser.add_argument('--epoch', type=int, required=True, help='the last epoch (0-based) of the runs')
    parser.add_argument('--out', type=Path, default=ROOT / 'benchmarks/results/fmnist_weights')
    parser.add_argument(
        '--seed-runs',
        type=lambda text: (text.split('=', 1)[0], Path(text.split('=', 1)[1])),
        action='append',
        default=[],
        metavar='SEED=DIR',
        help='the same runs with another seed',
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = Path(registry.__file__).with_name('manifest.json')
    manifest = json.loads(manifest_path.read_text())
    results = {}
    for tag, (folder, description) in RUNS.items():
        run = args.runs / folder
        file = Path(registry.__file__).with_name('files') / f'{tag}.safetensors'
        file.parent.mkdir(exist_ok=True)
        if not (file.is_file() and registry.sha256(file) == manifest.get(tag, {}).get('sha256')):
            export_checkpoint(checkpoint_at(run, args.epoch), file)  # once: a published file is never rewritten
            file.chmod(0o644)  # (safetensors orders its metadata differently from one export to the next)
        manifest[tag] = {
            'source': {'package': f'files/{file.name}'},
            'sha256': registry.sha256(file),
            'size': file.stat().st_size,
            'cfg': {
                'num_classes': 10,
                'input_size': [1, 32, 32],
                'pool_size': [8, 8],
                'crop_pct': 1.0,
                'mean': list(FASHION_MNIST_MEAN),
                'std': list(FASHION_MNIST_STD),
                'label_names': LABELS,
                'license': 'apache-2.0',
                'notes': [f'{description}; trained here: {COMMANDS[folder]}'],
            },
        }
        model = timm.create_model(
            'hb_net_20_cifar', num_classes=10, in_chans=1, pretrained=True, pretrained_cfg_overlay=dict(file=str(file))
        ).eval()
        results[tag] = dict(
            description=description,
            command=COMMANDS[folder],
            config=CONFIG,
            seed=0,
            epochs=args.epoch + 1,
            learned_coefficients=folder == 'hb_net_20',
            test_top1=test_top1(model),
            test_top1_first_1000=test_top1(model, 1000),
            curves=curves(run, args.epoch),
            parameters=sum(p.numel() for p in model.parameters()),
            gmacs=gmacs(model, (1, 32, 32)),
            coefficients=coefficients(model),
            sha256=manifest[tag]['sha256'],
            size=manifest[tag]['size'],
        )
        results[tag]['seeds'] = {'0': results[tag]['test_top1']}
        for seed, root in args.seed_runs:
            results[tag]['seeds'][seed] = test_top1(load_run(model, root / folder, args.epoch))
        print(f'{tag}: test top-1 {100 * results[tag]["test_top1"]:.2f}% ({file}, sha256 {results[tag]["sha256"]})')
    manifest_path.write_text(json.dumps(manifest, indent=1) + '\n')
    (args.out / 'runs.json').write_text(json.dumps(results, indent=1) + '\n')
    plot(results, args.out)


if __name__ == '__main__':
    main()
