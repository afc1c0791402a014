"""Layer-parallel LPOM on Fashion-MNIST: serial against the odd-even schedule and 2 processes, and a simulation of
staleness for more workers.

    OMP_NUM_THREADS=1 python benchmarks/lpom_parallel.py --mu 784-300-10=10 784-1000-500-250-10=100 \
        --out benchmarks/results/lpom_parallel

``--mu`` gives each network the value benchmarks/lpom_fmnist.py chose on its validation split (relu).

Part 1, equal epochs (first ``--train`` training images, all 10k test images, seed 0): LPOM serially in this
process (1 and 2 threads), the odd-even schedule in this process, and ``optnets.recipes.lpom_distributed`` on 2 gloo
processes (1 thread each) launched by torchrun, synchronous (staleness 0) and asynchronous (staleness 1 and
unbounded); test accuracy and wall time per epoch.

Part 2, a simulation for machines with more cores: one worker per layer, each activation update reading its
neighbours as they were ``d`` sweeps earlier (d = 0 is the odd-even schedule; a neighbour changes once a sweep, so
a delay of ``2d - 1`` half-sweeps reads what ``2d`` does), with and without ``rho_max`` (updates kept contractions,
for which asynchronous fixed-point iterations are known to converge).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from optnets.lpom import LPOM, solver
from optnets.lpom.estimator import DEFAULT_MU
from optnets.recipes.data import fashion_mnist_flat

ARCHS = {'784-300-10': (300,), '784-1000-500-250-10': (1000, 500, 250)}


def load(train: int):
    splits = ((True, train), (False, None))
    return [tuple(t.numpy() for t in fashion_mnist_flat(split, slice(0, n))) for split, n in splits]


def in_process(hidden, data, epochs, threads, **kwargs):
    (x, y), (xt, yt) = data
    torch.set_num_threads(threads)
    start = time.perf_counter()
    model = LPOM(hidden, random_state=0, max_iter=epochs, **kwargs).fit(x, y)
    return dict(test_accuracy=model.score(xt, yt), seconds_per_epoch=(time.perf_counter() - start) / epochs)


def two_processes(hidden, train, epochs, staleness, mu):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / 'weights.pt'
        subprocess.run(
            [
                sys.executable,
                '-m',
                'torch.distributed.run',
                '--standalone',
                '--nproc_per_node',
                '2',
                '-m',
                'optnets.recipes.lpom_distributed',
                '--train',
                str(train),
                '--epochs',
                str(epochs),
                '--hidden',
                *map(str, hidden),
                '--staleness',
                str(staleness),
                '--mu',
                str(mu),
                '--out',
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        report = json.loads(out.with_suffix('.json').read_text())
    return dict(test_accuracy=report['test_accuracy'], seconds_per_epoch=report['seconds_per_epoch'])


def stale_step(model, x, target, acts, mu, delay: int):
    """One mini-batch with every activation update reading its neighbours ``delay`` sweeps late."""
    layers, weights, n = model.layers_, model.weights_, len(model.weights_)
    xs = solver.forward(layers, weights, x, acts)
    snapshots = [list(xs)]
    for half in range(2 * model.activation_iters):
        ratios = (
            solver.contracting_ratios(layers, weights, acts, mu, model.rho_max, model.loss) if model.rho_max else None
        )
        seen = snapshots[max(0, len(snapshots) - 1 - 2 * delay)]
        new = {}
        for i in range(1, n + 1):
            if i % 2 == (1 if half % 2 == 0 else 0):
                view = [*seen[:i], xs[i], *seen[i + 1 :]]  # its own value is current, its neighbours' late
                new[i] = solver.update(i, layers, view, weights, acts, mu, model.loss, target, ratios)
        for i, value in new.items():
            xs[i] = value
        snapshots.append(list(xs))
    for i in range(n):
        weights[i].copy_(
            solver.weight_step(layers[i], weights[i], xs[i], xs[i + 1], acts[i], model.weight_iters, model.pinv_reg)
        )


def simulate(hidden, data, epochs, delay, mu, rho_max=None):
    (x, y), (xt, yt) = data
    model = LPOM(hidden, mu=mu, random_state=0, rho_max=rho_max, max_iter=epochs)
    acts, mu = model.settings()
    for images, target in model.minibatches(x, y):
        stale_step(model, images, target, acts, mu, delay)
    return model.score(xt, yt)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train', type=int, default=10000)
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--mu', nargs='*', default=[], help="ARCH=MU for each network (default: LPOM's)")
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)
    mus = {arch: DEFAULT_MU for arch in ARCHS} | {k: float(v) for k, v in (item.split('=') for item in args.mu)}
    args.out.mkdir(parents=True, exist_ok=True)
    data = load(args.train)
    results = dict(settings=vars(args) | {'out': str(args.out)}, mu=mus, equal_epochs={}, staleness={})
    for arch, hidden in ARCHS.items():
        mu = mus[arch]
        runs = {
            'serial, 1 thread': in_process(hidden, data, args.epochs, 1, mu=mu),
            'serial, 2 threads': in_process(hidden, data, args.epochs, 2, mu=mu),
            'odd-even, 1 thread': in_process(hidden, data, args.epochs, 1, mu=mu, schedule='odd-even'),
            '2 processes, synchronous': two_processes(hidden, args.train, args.epochs, 0, mu),
            '2 processes, staleness 1': two_processes(hidden, args.train, args.epochs, 1, mu),
            '2 processes, unbounded': two_processes(hidden, args.train, args.epochs, -1, mu),
        }
        results['equal_epochs'][arch] = runs
        for name, run in runs.items():
            print(
                f'{arch:20} {name:26} {100 * run["test_accuracy"]:6.2f}%  {run["seconds_per_epoch"]:6.2f} s/epoch',
                flush=True,
            )
    torch.set_num_threads(1)
    arch = '784-1000-500-250-10'
    for rho_max in (None, 0.9):
        for delay in range(len(ARCHS[arch]) + 2):  # 0 to 4 sweeps: up to one per worker
            accuracy = simulate(ARCHS[arch], data, 1, delay, mus[arch], rho_max)
            results['staleness'].setdefault(str(rho_max), {})[delay] = accuracy
            print(
                f'simulated, 4 workers, delay {delay} sweeps, rho_max {rho_max}: {100 * accuracy:.2f}% after 1 epoch',
                flush=True,
            )
    (args.out / 'results.json').write_text(json.dumps(results, indent=1) + '\n')


if __name__ == '__main__':
    main()
