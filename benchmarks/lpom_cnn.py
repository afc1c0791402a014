"""A small CNN trained by LPOM against the same CNN trained by SGD and by Adam, and LPOM's own MLP, on
Fashion-MNIST, with the protocol of lpom_fmnist.py.

    OMP_NUM_THREADS=1 python benchmarks/lpom_cnn.py --train 10000 --epochs 3 \
        --out benchmarks/results/lpom_cnn_10k_3ep_tuning

The CNN: conv 16 5x5 + 2x2 average pooling, conv 32 5x5 + 2x2 average pooling, a linear output, relu, Glorot
initialisation for every method; LPOM, SGD and Adam also with batch normalization after each convolution (LPOM's:
batch statistics, no learned scale or shift, and the same in the backprop CNN). Hyperparameters
are chosen on the validation split (the last 5k training images) with seed 0, then 3 seeds are trained and tested
on all 10k test images; equal epochs, batch 100, CPU time per epoch beside the accuracy. Writes results.json.

Grid points already validated at the same budget are reused, so an interrupted or widened grid runs only the
rest; ``--jobs`` validates points in parallel processes. The long run trains every method on 55k images
(all but the validation split) with the settings the tuned run chose on validation, one checkpoint per finished
seed (a rerun of the same command resumes there):

    OMP_NUM_THREADS=1 python benchmarks/lpom_cnn.py --train 55000 --epochs 10 \
        --chosen-from benchmarks/results/lpom_cnn_10k_3ep_tuning/results.json \
        --out benchmarks/results/lpom_cnn_55k_10ep_bn_mu10
"""

import argparse
import json
import multiprocessing
import statistics
from pathlib import Path

import torch
from torch import nn

from lpom_fmnist import BATCH, grid_points, load, run, trained_by  # the same protocol (a sibling script)

from optnets.lpom import LPOM, LPOMConv

ARCHITECTURE = ('conv16x5', 'avg2', 'conv32x5', 'avg2')
WITH_NORM = ('conv16x5bn', 'avg2', 'conv32x5bn', 'avg2')  # LPOM's batch normalization (see optnets.lpom.layers)
GRIDS = {  # the full-size comparison gives each method 6 points: SGD, Adam, with BN or not, LPOM CNN + BN, rho_max
    'SGD': dict(lr=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3)),
    'Adam': dict(lr=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
    'SGD + BN': dict(lr=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3)),  # the same CNN with the batch normalization LPOM has
    'Adam + BN': dict(lr=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
    'LPOM CNN': dict(mu=(0.3, 1.0, 3.0, 10.0, 30.0)),
    'LPOM CNN + BN': dict(mu=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)),
    'LPOM CNN + BN, rho_max': dict(mu=(1.0, 3.0, 10.0), rho_max=(None, 0.9)),  # widened to 1: 3 was the edge
    'LPOM MLP 784-300-10': dict(mu=(1.0, 3.0, 10.0, 30.0, 100.0, 300.0)),  # widened: full size chose 30
}


def cnn(norm: bool = False) -> nn.Module:
    """The CNN; with ``norm``, batch normalization where LPOM's is (after each convolution and its pooling, before
    the activation) and as LPOM's is: the batch's mean and variance, no learned scale or shift."""

    def block(c_in, c_out):
        bn = [nn.BatchNorm2d(c_out, affine=False)] if norm else []
        return [nn.Conv2d(c_in, c_out, 5, padding=2), nn.AvgPool2d(2), *bn, nn.ReLU()]

    net = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)), *block(1, 16), *block(16, 32), nn.Flatten(), nn.Linear(32 * 7 * 7, 10)
    )
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def backprop(optimizer, norm: bool = False):
    def make(_hidden, _activation, seed, lr):
        torch.manual_seed(seed)
        return trained_by(cnn(norm), optimizer, lr, seed)

    return make


def lpom(architecture=None):
    def make(_hidden, _activation, seed, mu, rho_max=None):
        settings = dict(mu=mu, rho_max=rho_max, max_iter=1, batch_size=BATCH, warm_start=True, random_state=seed)
        model = LPOMConv(architecture, (1, 28, 28), **settings) if architecture else LPOM((300,), **settings)
        return (lambda x, y: model.fit(x.numpy(), y.numpy())), model.forward, model

    return make


METHODS = {
    'SGD': backprop('SGD'),
    'Adam': backprop('Adam'),
    'SGD + BN': backprop('SGD', norm=True),
    'Adam + BN': backprop('Adam', norm=True),
    'LPOM CNN': lpom(ARCHITECTURE),
    'LPOM CNN + BN': lpom(WITH_NORM),
    'LPOM CNN + BN, rho_max': lpom(WITH_NORM),
    'LPOM MLP 784-300-10': lpom(),
}


def _key(hyper: dict) -> str:
    return json.dumps(hyper, sort_keys=True)


def validate(name: str, grid: dict, known: list, args, checkpoint) -> list:
    """``[(hyper, validation accuracy)]`` over ``grid`` (seed 0). Points in ``known`` (a results.json's ``grid`` of
    the same budget) are reused, so a widened or interrupted grid runs only the rest, ``args.jobs`` at a time;
    ``checkpoint(grid so far)`` is called as each finishes."""
    tried = {_key(t['hyper']): t['val'] for t in known}
    missing = [h for h in grid_points(grid) if _key(h) not in tried]
    if missing:
        with multiprocessing.get_context('spawn').Pool(min(args.jobs, len(missing))) as pool:
            for hyper, val in zip(missing, pool.imap(_validate, [(name, h, args.train, args.epochs) for h in missing])):
                tried[_key(hyper)] = val
                checkpoint([dict(hyper=json.loads(k), val=v) for k, v in tried.items()])
            pool.close()  # let the workers end (the with's exit terminates them: shutdown warns of leaked semaphores)
            pool.join()
    return [(hyper, tried[_key(hyper)]) for hyper in grid_points(grid)]


def _validate(work) -> float:
    """Validation accuracy of one grid point after its epochs (seed 0), in a process of its own."""
    name, hyper, n_train, epochs = work
    train, validation, _ = load(n_train)
    return run(METHODS[name], None, 'relu', 0, hyper, train, validation, epochs)[0][-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train', type=int, default=10000)
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--methods',
        nargs='+',
        default=list(METHODS),
        choices=list(METHODS),
        help='run these (their entries in an existing results.json are replaced)',
    )
    parser.add_argument(
        '--chosen-from',
        type=Path,
        help="no tuning: each method's settings as chosen on validation in this results.json",
    )
    parser.add_argument('--jobs', type=int, default=1, help='grid points validated in parallel, one process each')
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)
    if args.train > 55000:
        parser.error(f'--train {args.train}: at most 55000, the images before the validation split (the last 5000)')
    args.out.mkdir(parents=True, exist_ok=True)
    train, _, test = load(args.train)  # validation runs in the grid's own processes
    saved = args.out / 'results.json'
    results = json.loads(saved.read_text()) if saved.exists() else dict(architecture=ARCHITECTURE, methods={})
    results['settings'] = {k: str(v) for k, v in vars(args).items()}
    save = lambda: saved.write_text(json.dumps(results, indent=1) + '\n')  # noqa: E731
    tuned = json.loads(args.chosen_from.read_text())['methods'] if args.chosen_from else {}
    budget = dict(train=args.train, epochs=args.epochs)
    for name in args.methods:
        make = METHODS[name]
        previous = results['methods'].get(name, {})
        if previous.get('budget') != budget:
            previous = {}  # a run of another size: nothing of it is reused
        if name in tuned:
            entry = {k: tuned[name][k] for k in ('grid', 'chosen', 'at_edge')} | dict(tuned_in=str(args.chosen_from))
        else:
            grid = GRIDS[name]

            def checkpoint(grid_so_far):  # noqa: B023  (called before the loop moves on)
                results['methods'][name] = dict(budget=budget, grid=grid_so_far)  # noqa: B023
                save()

            points = validate(name, grid, previous.get('grid', []), args, checkpoint)
            chosen = max(points, key=lambda t: t[1])[0]
            entry = dict(
                grid=[dict(hyper=h, val=v) for h, v in points],
                chosen=chosen,
                at_edge=any(v in (grid[k][0], grid[k][-1]) for k, v in chosen.items() if len(grid[k]) > 2),
            )  # a choice of two (a cap or none) has no edge
        # the seeds an interrupted run (or a run that chose the same setting) finished
        done = previous.get('runs', {}) if previous.get('chosen') == entry['chosen'] else {}
        entry.update(budget=budget, runs=done)
        results['methods'][name] = entry
        save()  # the choice, before any test seed: other processes can run seeds of it (--chosen-from)
        for seed in args.seeds:
            if str(seed) not in done:
                curve, seconds, extras = run(make, None, 'relu', seed, entry['chosen'], train, test, args.epochs)
                done[str(seed)] = dict(curve=curve, seconds=seconds, extras=extras)
                save()  # a checkpoint per seed
        runs = [done[str(seed)] for seed in args.seeds]
        finals = [100 * r['curve'][-1] for r in runs]
        entry.update(
            test=finals,
            test_mean=statistics.mean(finals),
            test_std=statistics.stdev(finals) if len(finals) > 1 else 0.0,
            epoch_s=statistics.median(s for r in runs for s in r['seconds']),
        )
        print(
            f'{name:22} {entry["chosen"]} test {entry["test_mean"]:.2f} ± {entry["test_std"]:.2f}  '
            f'{entry["epoch_s"]:.1f} s/epoch{"  (grid edge)" if entry["at_edge"] else ""}',
            flush=True,
        )
        save()


if __name__ == '__main__':
    main()
