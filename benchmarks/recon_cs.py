"""Compressed sensing (or noisy inpainting) of Fashion-MNIST: the optnets reconstruction networks against the
classical iterations (ISTA and FISTA with the sparsity prior the networks unroll at their ``theory`` start, and with
a TV prior) and against deepinv's own unfolded proximal gradient and ADMM with the same learned prior.

    OMP_NUM_THREADS=1 python -m benchmarks.recon_cs --ratios 0.25 0.1 0.5 --train 5000 --epochs 4 --phases 5 \\
        --val 500 --test 1000 --classical-iters 100 --seeds 0 1 2 --out benchmarks/results/recon_cs_table
    python -m benchmarks.recon_cs --report --out benchmarks/results/recon_cs_table   # table.md, recon_<ratio>.png

The same data, physics and measurements for every method: per ratio one operator (seed 0): deepinv's
``CompressedSensing``, a Gaussian ``A`` with ``ratio * 784`` rows, noiseless; or with ``--physics inpainting``,
deepinv's ``Inpainting`` keeping that fraction of the pixels, with Gaussian noise of std ``NOISE`` (the evaluation
measurements drawn from the same seed for every method). Training images from the first 55,000 of the training set
(the first ``--train``), validation the last 5,000 (``--val`` of them), test the first ``--test`` test images;
pixels in [0, 1]. The classical methods run ``--classical-iters`` iterations at step ``1/L`` with their ``lambda``
chosen on the validation images from a grid. The learned ones (optnets' ``ista_net``, ``ista_net_plus``,
``fista_net``, ``admm_net_cs``, and deepinv's unfolded PGD and ADMM with ISTA-Net+'s prox in every phase, the
parameters of ``ista_net_plus``) train with the same loss (MSE plus ISTA-Net's symmetry term), Adam at lr 1e-3,
batch 64, ``--epochs`` epochs, 3 seeds; the checkpoint of the last epoch is tested. Each run's result is written as
it ends, so an interrupted run resumes; beside it, its reconstructions of the first ``SHOWN`` test images, for the
figure.
"""

import argparse
import json
import time
from pathlib import Path

import deepinv as dinv
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import load_file, save_file
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from optnets.recon import presets
from optnets.recon.network import lipschitz as measured_lipschitz
from optnets.recon.prox import ISTANetPlusProx, symmetry_loss
from optnets.recipes.data import fashion_mnist_flat
from benchmarks.stats import mean_spread

LEARNED = ('ista_net', 'ista_net_plus', 'fista_net', 'admm_net_cs', 'deepinv_unfolded_pgd', 'deepinv_unfolded_admm')
DEEPINV = ('deepinv_unfolded_pgd', 'deepinv_unfolded_admm')
OPTNETS = tuple(name for name in LEARNED if name not in DEEPINV)
ANCHOR = 'deepinv_unfolded_pgd'
"""The baseline the optnets networks answer to: deepinv's unfolded proximal gradient with ISTA-Net+'s prox."""
DIAGNOSTIC = ('ista_net_plus_raw_step',)
"""Run only when named in ``--methods``: ``ista_net_plus`` whose step ``a`` (in units of ``1/L``) Adam moves at
``L`` times the learning rate, which under Adam (invariant to a gradient's scale) is learning the raw step ``a/L``
at the common rate, as deepinv's unfolded PGD does: the one difference between those two networks."""
CLASSICAL = {  # name -> (the iteration, its prior)
    'ista_l1': (dinv.optim.PGD, dinv.optim.L1Prior),
    'fista_l1': (dinv.optim.FISTA, dinv.optim.L1Prior),
    'ista_tv': (dinv.optim.PGD, lambda: dinv.optim.TVPrior(n_it_max=20)),
    'fista_tv': (dinv.optim.FISTA, lambda: dinv.optim.TVPrior(n_it_max=20)),
}
"""ISTA and FISTA with the l1 prior (soft-thresholding: what the networks compute at their ``theory`` start, LASSO's
iterates), and with a TV prior."""
LAMBDAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""The classical methods' grid of prior weights (a first grid of TV weights up to 0.1 chose its edge at 25%, and
l1's best weights lie below TV's)."""
PHYSICS = ('compressed_sensing', 'inpainting')
NOISE = 0.05
"""The std of the inpainting measurements' Gaussian noise (pixels in [0, 1])."""
SHOWN = 8
"""Test images whose reconstructions each run saves for the figure."""
LR = 1e-3
"""Adam's learning rate, for every learned method."""


def images(train: bool, rows: slice) -> torch.Tensor:
    x, _ = fashion_mnist_flat(train, rows)
    return x.reshape(-1, 1, 28, 28)


def physics_of(kind: str, ratio: float) -> dinv.physics.LinearPhysics:
    """The operator at ``ratio`` (see the module's docstring), seed 0."""
    if kind == 'inpainting':
        noise = dinv.physics.GaussianNoise(NOISE, rng=torch.Generator().manual_seed(0))
        return dinv.physics.Inpainting((1, 28, 28), mask=ratio, rng=torch.Generator().manual_seed(0), noise_model=noise)
    return dinv.physics.CompressedSensing(
        m=round(ratio * 784), img_size=(1, 28, 28), rng=torch.Generator().manual_seed(0)
    )


def seeded(physics: dinv.physics.Physics) -> dinv.physics.Physics:
    """``physics`` with its noise to be drawn afresh from seed 0, so that every method is scored on the same
    measurements. Noiseless physics (compressed sensing) has no generator to seed."""
    if getattr(physics.noise_model, 'rng', None) is not None:
        physics.noise_model.rng_manual_seed(0)
    return physics


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, y: torch.Tensor, physics, target) -> None:
    """One Adam step on the loss every learned method trains with: MSE plus 0.01 times ISTA-Net's symmetry term."""
    loss = F.mse_loss(model(y, physics), target) + 0.01 * symmetry_loss(model)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def lipschitz(physics: dinv.physics.Physics) -> float:
    """``L = ||A^T A||`` (measured once per physics, as the networks do): ``1/L`` is the classical methods' step
    and deepinv's initial one."""
    return measured_lipschitz(physics, torch.zeros(1, 1, 28, 28))


class ProxDenoiser(nn.Module):
    """ISTA-Net+'s prox as a deepinv denoiser (the noise level is not used): the learned prior of every phase."""

    def __init__(self):
        super().__init__()
        self.prox = ISTANetPlusProx(1, 32)

    def forward(self, x: torch.Tensor, sigma: float | None = None, **kwargs) -> torch.Tensor:
        return self.prox(x)


def learned(name: str, phases: int, physics: dinv.physics.Physics) -> nn.Module:
    if name not in DEEPINV:
        return presets.build('ista_net_plus' if name == 'ista_net_plus_raw_step' else name, phases)
    step = 1 / lipschitz(physics)
    shared = dict(
        unfold=True,
        data_fidelity=dinv.optim.L2(),
        prior=[dinv.optim.PnP(denoiser=ProxDenoiser()) for _ in range(phases)],
        stepsize=[step] * phases,
        g_param=[0.0] * phases,
        max_iter=phases,
    )
    if name == 'deepinv_unfolded_pgd':
        return dinv.optim.PGD(trainable_params=['stepsize'], **shared)
    return dinv.optim.ADMM(beta=[1.0] * phases, trainable_params=['stepsize', 'beta'], **shared)


def parameter_groups(name: str, model: nn.Module, physics, step_lr: str) -> list[dict]:
    """Every parameter at the common rate, but for an optnets network's steps with ``step_lr='lipschitz'`` (the
    recipe's default since the diagnostic) and ``ista_net_plus_raw_step``'s (see ``DIAGNOSTIC``) always: at ``L``
    times the rate, the raw step at it, as deepinv's."""
    raw = name == 'ista_net_plus_raw_step' or step_lr == 'lipschitz' and name not in DEEPINV
    if not raw:
        return [dict(params=list(model.parameters()))]
    return model.raw_step_groups(LR, lipschitz(physics))


def scores(model, physics, x: torch.Tensor, batch: int = 250) -> dict:
    """Mean PSNR and SSIM (outputs clipped to [0, 1]) and milliseconds per image."""
    psnr, ssim, seconds = [], [], 0.0
    seeded(physics)
    with torch.no_grad():
        for part in x.split(batch):
            start = time.perf_counter()
            out = model(physics(part), physics).clamp(0, 1)
            seconds += time.perf_counter() - start
            psnr.append(peak_signal_noise_ratio(out, part, data_range=1.0, reduction='none', dim=(1, 2, 3)))
            ssim.append(structural_similarity_index_measure(out, part, data_range=1.0, reduction='none'))
    return dict(psnr=float(torch.cat(psnr).mean()), ssim=float(torch.cat(ssim).mean()), ms=1e3 * seconds / len(x))


def train(name: str, ratio: float, seed: int, args) -> dict:
    torch.manual_seed(seed)
    physics = physics_of(args.physics, ratio)
    model = learned(name, args.phases, physics)
    optimizer = torch.optim.Adam(parameter_groups(name, model, physics, args.step_lr), lr=LR)
    x = images(True, slice(0, args.train))
    order = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=order).split(64):
            target = x[batch]
            train_step(model, optimizer, physics(target), physics, target)
    model.eval()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = dict(
        val=scores(model, physics, images(True, slice(60000 - args.val, 60000))),
        test=scores(model, physics, images(False, slice(0, args.test))),
        params=params,
        fit_seconds=time.perf_counter() - start,
    )
    return result, shown(model, physics)


def shown(model, physics) -> torch.Tensor:
    """The model's reconstructions of the first ``SHOWN`` test images, clipped to [0, 1]."""
    x = images(False, slice(0, SHOWN))
    with torch.no_grad():
        return model(seeded(physics)(x), physics).clamp(0, 1)


def classical(name: str, ratio: float, args) -> dict:
    physics = physics_of(args.physics, ratio)
    step = 1 / lipschitz(physics)
    iteration, prior = CLASSICAL[name]

    def build(lam):
        return iteration(
            data_fidelity=dinv.optim.L2(),
            prior=prior(),
            lambda_reg=lam,
            stepsize=step,
            max_iter=args.classical_iters,
        )

    val = images(True, slice(60000 - args.val, 60000))
    tried = {lam: scores(build(lam), physics, val) for lam in LAMBDAS}
    lam = max(tried, key=lambda value: tried[value]['psnr'])
    if lam in (LAMBDAS[0], LAMBDAS[-1]):
        print(f'{name} {ratio}: lambda {lam} is at the edge of the grid {LAMBDAS}', flush=True)
    result = dict(
        val=tried[lam],
        test=scores(build(lam), physics, images(False, slice(0, args.test))),
        params=0,
        lam=lam,
        grid={str(k): v['psnr'] for k, v in tried.items()},
    )
    return result, shown(build(lam), physics)


def run(args):
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.out.glob('*.json'):  # runs before step_lr existed learned every step at the common rate
        settings = json.loads(path.read_text())['settings']
        if settings.get('step_lr', 'common') != args.step_lr:
            raise SystemExit(f'{args.out} holds runs of another --step-lr ({path.name}): choose another --out')
        if settings.get('physics', 'compressed_sensing') != args.physics:
            raise SystemExit(f'{args.out} holds runs of another --physics ({path.name}): choose another --out')
    jobs = [  # seed by seed, ratio by ratio (in the order given), the classical methods with the first seed
        (name, ratio, None if name in CLASSICAL else seed)
        for seed in args.seeds
        for ratio in args.ratios
        for name in (*CLASSICAL, *LEARNED, *DIAGNOSTIC)
        if name in args.methods and (seed == args.seeds[0] or name not in CLASSICAL)
    ]
    for name, ratio, seed in jobs:
        path = saved(args.out, name, ratio, seed).with_suffix('.json')
        if path.exists():
            continue
        result, reconstructions = classical(name, ratio, args) if seed is None else train(name, ratio, seed, args)
        save_file({'x': reconstructions}, saved(args.out, name, ratio, seed))
        path.write_text(json.dumps(dict(result, name=name, ratio=ratio, seed=seed, settings=vars_of(args)), indent=1))
        print(f'{name} {ratio} seed {seed}: test PSNR {result["test"]["psnr"]:.2f}', flush=True)


def saved(out: Path, name: str, ratio: float, seed: int | None) -> Path:
    """Where a run's reconstructions are saved; its result is the same path with ``.json``."""
    return out / (f'{name}_{ratio}' + ('' if seed is None else f'_seed{seed}') + '.safetensors')


def vars_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def against_deepinv(groups: dict[tuple[float, str], list[dict]]) -> list[str]:
    """Per ratio, the optnets network with the best mean validation PSNR (chosen on validation, never on test)
    against deepinv's unfolded PGD with the same prox on test: both means, and their gap seed by seed."""
    lines = [
        '| ratio | optnets, chosen on validation | its test PSNR | deepinv unfolded PGD | gap, seed by seed '
        '| at or above |',
        '|---|---|---|---|---|---|',
    ]
    for ratio in sorted({ratio for ratio, _ in groups}):
        ours = [name for name in OPTNETS if (ratio, name) in groups]
        if not ours or (ratio, ANCHOR) not in groups:
            continue
        pick = max(ours, key=lambda name: sum(g['val']['psnr'] for g in groups[ratio, name]) / len(groups[ratio, name]))
        test = {name: {g['seed']: g['test']['psnr'] for g in groups[ratio, name]} for name in (pick, ANCHOR)}
        gaps = [test[pick][seed] - test[ANCHOR][seed] for seed in sorted(test[pick].keys() & test[ANCHOR].keys())]
        if not gaps:  # no seed run by both yet
            continue
        lines.append(
            f'| {ratio:.0%} | {pick} | {mean_spread(list(test[pick].values()))} '
            f'| {mean_spread(list(test[ANCHOR].values()))} '
            f'| {mean_spread(gaps)} ({len(gaps)} seed{"s" * (len(gaps) > 1)}) '
            f'| {"yes" if sum(gaps) >= 0 else "no"} |'
        )
    return lines


def report(args):
    runs = [json.loads(p.read_text()) for p in sorted(args.out.glob('*.json'))]
    groups = {}
    for r in runs:
        groups.setdefault((r['ratio'], r['name']), []).append(r)
    lines = [
        '| ratio | method | params | runs | val PSNR | test PSNR | test SSIM | ms/image |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for (ratio, name), group in sorted(groups.items()):
        lines.append(
            f'| {ratio:.0%} | {name} | {group[0]["params"]} | {len(group)} '
            f'| {mean_spread([g["val"]["psnr"] for g in group])} | {mean_spread([g["test"]["psnr"] for g in group])} '
            f'| {mean_spread([g["test"]["ssim"] for g in group])} '
            f'| {sum(g["test"]["ms"] for g in group) / len(group):.2f} |'
        )
    lines += ['', *against_deepinv(groups)]
    (args.out / 'table.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    for ratio in sorted({ratio for ratio, _ in groups}):
        figure(args.out, ratio, [r for r in runs if r['ratio'] == ratio])


def figure(out: Path, ratio: float, runs: list[dict]):
    """recon_<ratio>.png: the first test images, their back-projected measurements ``A^T y`` and each method's
    reconstructions, the learned ones from the first seed at which every learned method saved them (the classical
    ones have no seed)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    methods = (*CLASSICAL, *LEARNED)
    runs = sorted(
        (r for r in runs if r['name'] in methods and saved(out, r['name'], r['ratio'], r['seed']).exists()),
        key=lambda r: methods.index(r['name']),
    )
    learned = {r['name'] for r in runs if r['seed'] is not None}
    seeds = sorted({r['seed'] for r in runs if r['seed'] is not None})
    seed = next((s for s in seeds if {r['name'] for r in runs if r['seed'] == s} == learned), None)
    rows = [(f'{r["name"]}' + ('' if r['seed'] is None else f' (seed {r["seed"]})'), r) for r in runs]
    rows = [(label, r) for label, r in rows if r['seed'] in (None, seed)]
    if not rows:
        return
    truth = images(False, slice(0, SHOWN))
    kind = runs[0]['settings'].get('physics', 'compressed_sensing')
    physics = physics_of(kind, ratio)
    back_projected = physics.A_adjoint(seeded(physics)(truth)).clamp(0, 1)
    pictures = [('ground truth', truth), ('A^T y', back_projected)] + [
        (label, load_file(saved(out, r['name'], r['ratio'], r['seed']))['x']) for label, r in rows
    ]
    fig, axes = plt.subplots(len(pictures), SHOWN, figsize=(SHOWN * 0.9, len(pictures) * 0.95), squeeze=False)
    for row, (label, x) in zip(axes, pictures):
        for i, ax in enumerate(row):
            ax.imshow(x[i, 0], cmap='gray', vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label, rotation=0, ha='right', va='center', fontsize=8)
            if label != 'ground truth':
                psnr = peak_signal_noise_ratio(x[i : i + 1], truth[i : i + 1], data_range=1.0)
                ax.set_title(f'{psnr:.1f} dB', fontsize=6, pad=2)
    what = (
        f'Compressed sensing at {ratio:.0%} sampling'
        if kind == 'compressed_sensing'
        else f'Inpainting from {ratio:.0%} of the pixels, noise std {NOISE}'
    )
    fig.suptitle(f'{what}: the first {SHOWN} test images', fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f'recon_{round(100 * ratio)}.png', dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--physics', choices=PHYSICS, default='compressed_sensing')
    parser.add_argument('--ratios', type=float, nargs='+', default=[0.1, 0.25, 0.5])
    parser.add_argument('--train', type=int, default=10000)
    parser.add_argument('--val', type=int, default=1000)
    parser.add_argument('--test', type=int, default=1000)
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--phases', type=int, default=5)
    parser.add_argument('--classical-iters', type=int, default=100)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--methods', nargs='+', default=[*CLASSICAL, *LEARNED], choices=[*CLASSICAL, *LEARNED, *DIAGNOSTIC]
    )
    parser.add_argument(
        '--step-lr',
        choices=['lipschitz', 'common'],
        default='lipschitz',
        help="the optnets networks' steps at L times the rate (the recipe's default) or at the rate",
    )
    parser.add_argument('--report', action='store_true', help='write table.md from the runs in --out')
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)
    report(args) if args.report else run(args)


if __name__ == '__main__':
    main()
