"""LPOM against backpropagation (SGD, Adam) and a quadratic-penalty lifted baseline on Fashion-MNIST, fairly.

    OMP_NUM_THREADS=1 python benchmarks/lpom_fmnist.py --out benchmarks/results/lpom_fmnist

Protocol: train on the first ``--train`` training images, choose every method's hyperparameters on a validation
split (the last 5k training images, disjoint from them) with seed 0, then train 3 seeds at the chosen values and
test on all 10k test images: equal epochs and batch size for every method, CPU time per epoch beside the accuracy.
Grids of 9 points each (an equal tuning budget): SGD's (momentum 0.9) and Adam's learning rates over four decades,
LPOM's ``mu``, the penalty baseline's ``mu`` and step; a grid whose best value sits at its edge is flagged. Every
method is offered LPOM's initialisation (Glorot uniform, zero bias); backpropagation is also run from PyTorch's
default ``Linear`` initialisation (its own grid). Also measured: LPOM with ``rho_max=0.9`` (each activation update
kept a contraction) at the chosen ``mu``, the spread of validation accuracy over LPOM's ``mu`` grid against that
over the learning-rate grids (is ``mu`` easier to tune?), Theorem 2's rho in LPOM's runs, and the peak memory of one
training epoch of LPOM and of SGD, each in a child process. Writes ``results.json``, ``table.md`` (test accuracy)
and ``tuning.md`` (the spreads over the grids); ``--report`` rewrites the two tables from ``results.json``,
``--memory`` measures the memory again into it.
"""

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optnets.lpom import LPOM, get_activation
from optnets.lpom.layers import parse
from optnets.lpom.solver import augment, forward, loss_value
from optnets.recipes.data import fashion_mnist_flat

ARCHS = {'784-300-10': (300,), '784-1000-500-250-10': (1000, 500, 250)}
GRIDS = {  # 9 points each: an equal tuning budget for every method
    'SGD': dict(lr=(0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)),
    'Adam': dict(lr=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)),
    'LPOM': dict(mu=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)),
    'penalty': dict(mu=(0.01, 0.1, 1.0), lr=(0.5, 1.0, 1.5)),
}
BATCH = 100


def load(train: int):
    """(train, validation, test) as (float images in [0, 1] flattened, labels); validation = last 5k train images."""
    return (
        fashion_mnist_flat(True, slice(0, train)),
        fashion_mnist_flat(True, slice(-5000, None)),
        fashion_mnist_flat(False),
    )


def accuracy(logits, y) -> float:
    return float((torch.as_tensor(logits).argmax(1) == y).float().mean())


# -- methods: each is make(hidden, activation, seed, **hyper) -> (train_epoch(x, y), logits(x)) ----------------------
def backprop(optimizer: str, init: str):
    def make(hidden, activation, seed, lr):
        torch.manual_seed(seed)
        widths, act = (784, *hidden, 10), get_activation(activation)
        layers = []
        for i, (d_in, d_out) in enumerate(zip(widths, widths[1:])):
            linear = nn.Linear(d_in, d_out)
            if init == 'glorot':  # LPOM's initialisation
                nn.init.xavier_uniform_(linear.weight)
                nn.init.zeros_(linear.bias)
            layers += [linear] + ([act.module()] if i < len(widths) - 2 else [])
        return trained_by(nn.Sequential(*layers), optimizer, lr, seed)

    return make


def trained_by(net: nn.Module, optimizer: str, lr: float, seed: int):
    """``(train_epoch(x, y), logits(x))`` for ``net`` trained by backpropagation with SGD (momentum 0.9) or Adam."""
    opt = (
        torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        if optimizer == 'SGD'
        else torch.optim.Adam(net.parameters(), lr=lr)
    )
    gen = torch.Generator().manual_seed(seed)

    def epoch(x, y):
        net.train()
        for batch in torch.randperm(len(x), generator=gen).split(BATCH):
            opt.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            opt.step()

    def logits(x):  # in eval mode: batch normalization (where a net has it) from its running averages
        net.eval()
        with torch.no_grad():
            return net(x)

    return epoch, logits


def lpom(rho_max=None):
    def make(hidden, activation, seed, mu):
        model = LPOM(
            hidden,
            activation=activation,
            mu=mu,
            max_iter=1,
            batch_size=BATCH,
            warm_start=True,
            random_state=seed,
            rho_max=rho_max,
        )
        return (lambda x, y: model.fit(x.numpy(), y.numpy())), (lambda x: model.forward(x)), model

    return make


class PenaltyLifted:
    """Quadratic-penalty lifted training (MAC-style): ``l(X[n]) + mu/2 sum ||X[i+1] - phi(W[i]X[i])||^2`` by block
    coordinate gradient steps on each block's own terms (no chain through the network), like LPOM's blocks but
    with the penalty in place of LPOM's f and g. Step sizes are ``lr`` over each block's Lipschitz bound."""

    def __init__(self, widths, activation, mu=1.0, lr=1.0, iters=5, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.acts = [get_activation(activation)] * (len(widths) - 2) + [get_activation('identity')]
        self.weights = [
            torch.cat([(torch.rand(o, i, generator=gen) * 2 - 1) * (6 / (i + o)) ** 0.5, torch.zeros(o, 1)], 1)
            for i, o in zip(widths, widths[1:])
        ]
        self.layers = parse([f'fc{width}' for width in widths[1:-1]], widths[:1], widths[-1])
        self.mu, self.lr, self.iters, self.gen = mu, lr, iters, gen

    def _local(self, xs, i, target):
        """The terms that hold X[i] (i >= 1): the penalty into it, the penalty out of it, and the loss."""
        act = self.acts[i - 1]
        total = self.mu / 2 * ((xs[i] - act.phi(augment(xs[i - 1]) @ self.weights[i - 1].T)) ** 2).sum()
        if i < len(self.weights):
            residual = xs[i + 1] - self.acts[i].phi(augment(xs[i]) @ self.weights[i].T)
            total = total + self.mu / 2 * (residual**2).sum()
        else:
            total = total + loss_value('cross_entropy', xs[i], target)
        return total

    def step(self, x, y):
        target = F.one_hot(y, self.weights[-1].shape[0]).float()
        xs = forward(self.layers, self.weights, x, self.acts)
        for _ in range(self.iters):
            for i in range(1, len(xs)):
                block = xs[i].clone().requires_grad_()
                (grad,) = torch.autograd.grad(self._local([*xs[:i], block, *xs[i + 1 :]], i, target), block)
                out = self.weights[i][:, :-1] if i < len(self.weights) else torch.zeros(1, 1)
                lipschitz = self.mu * (
                    1 + self.acts[min(i, len(self.acts) - 1)].lipschitz ** 2 * torch.linalg.matrix_norm(out, 2) ** 2
                ) + (i == len(self.weights))
                xs[i] = (block - self.lr / lipschitz * grad).detach()
        for i, weight in enumerate(self.weights):
            w = weight.clone().requires_grad_()
            xa = augment(xs[i])
            lipschitz = self.mu * self.acts[i].lipschitz ** 2 * torch.linalg.matrix_norm(xa, 2) ** 2
            for _ in range(self.iters):
                loss = self.mu / 2 * ((xs[i + 1] - self.acts[i].phi(xa @ w.T)) ** 2).sum()
                (grad,) = torch.autograd.grad(loss, w)
                w = (w - self.lr / lipschitz * grad).detach().requires_grad_()
            self.weights[i] = w.detach()

    def epoch(self, x, y):
        for batch in torch.randperm(len(x), generator=self.gen).split(BATCH):
            self.step(x[batch], y[batch])


def penalty(hidden, activation, seed, mu, lr):
    model = PenaltyLifted((784, *hidden, 10), activation, mu=mu, lr=lr, seed=seed)
    return model.epoch, lambda x: forward(model.layers, model.weights, x, model.acts)[-1]


METHODS = {  # name -> (make, grid name)
    'SGD (Glorot init)': (backprop('SGD', 'glorot'), 'SGD'),
    'Adam (Glorot init)': (backprop('Adam', 'glorot'), 'Adam'),
    'SGD (PyTorch init)': (backprop('SGD', 'torch'), 'SGD'),
    'Adam (PyTorch init)': (backprop('Adam', 'torch'), 'Adam'),
    'LPOM': (lpom(), 'LPOM'),
    'quadratic penalty': (penalty, 'penalty'),
}


def run(make, hidden, activation, seed, hyper, train, evaluate, epochs):
    """Train ``epochs`` epochs; returns (accuracy on ``evaluate`` after each epoch, CPU seconds per epoch, extras)."""
    built = make(hidden, activation, seed, **hyper)
    epoch, logits = built[0], built[1]
    curve, seconds, rho = [], [], []
    for _ in range(epochs):
        start = time.process_time()  # this process's CPU time: other work on the machine does not inflate it
        epoch(*train)
        seconds.append(time.process_time() - start)
        curve.append(accuracy(logits(evaluate[0]), evaluate[1]))
        if len(built) > 2:  # LPOM: Theorem 2's rho of each hidden update at the epoch's end
            rho.append(built[2].rho())
    return curve, seconds, dict(rho=rho) if rho else {}


def grid_points(grid: dict):
    keys = list(grid)
    return [
        dict(zip(keys, values))
        for values in np.array(np.meshgrid(*grid.values()), dtype=object).reshape(len(keys), -1).T.tolist()
    ]


def _status(field: str) -> int:
    return int(dict(line.split(':', 1) for line in open('/proc/self/status'))[field].split()[0]) * 1024


def _epoch_peak(method, hidden, activation, hyper, train_size, queue):
    """In a child: load the data and build the model, reset the high-water mark (Linux clear_refs), train one
    epoch, and report the resident memory before and the peak during it."""
    torch.set_num_threads(1)
    train, _, _ = load(train_size)
    train = tuple(t.clone() for t in train)  # the training images alone, not the whole dataset they came from
    import gc

    gc.collect()
    built = METHODS[method][0](hidden, activation, 0, **hyper)
    Path('/proc/self/clear_refs').write_text('5')
    before = _status('VmRSS')
    built[0](*train)
    queue.put((before, _status('VmHWM')))


def epoch_peak(method, hidden, activation, hyper, train_size):
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    child = context.Process(target=_epoch_peak, args=(method, hidden, activation, hyper, train_size, queue))
    child.start()
    before, peak = queue.get()
    child.join()
    return dict(before_mb=before / 2**20, peak_mb=peak / 2**20, training_mb=(peak - before) / 2**20)


def table(results) -> str:
    lines = [
        '| network | activation | ' + ' | '.join(METHODS) + ' | LPOM, rho_max=0.9 |',
        '|---|---|' + '---|' * (len(METHODS) + 1),
    ]
    for row in results['configs']:
        cells = []
        for method in [*METHODS, 'LPOM, rho_max=0.9']:
            r = row['methods'][method]
            value = ', '.join(f'{k} {v:g}' for k, v in r['chosen'].items())
            edge = ' (edge)' if r.get('at_edge') else ''
            cells.append(f'{r["test_mean"]:.2f} ± {r["test_std"]:.2f} ({value}{edge}; {r["epoch_s"]:.1f} s/ep)')
        lines.append(f'| {row["arch"]} | {row["activation"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def tuning_table(results) -> str:
    """Validation accuracy over each grid (best / worst / standard deviation, in points, and how many grid points
    come within a point of the best): is mu easier to tune?"""
    spreads = ('LPOM', 'LPOM mu'), ('SGD', 'SGD lr'), ('Adam', 'Adam lr')
    lines = ['| network | activation | ' + ' | '.join(h for _, h in spreads) + ' |', '|---|---|---|---|---|']
    cell = '{best:.1f} / {worst:.1f} / {std:.1f} / {within_1_point} of {points}'
    for row in results['configs']:
        cells = [cell.format(**row['tuning_spread'][grid]) for grid, _ in spreads]
        lines.append(f'| {row["arch"]} | {row["activation"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def measure_memory(results, train_size: int):
    """``results['memory']``: one epoch of each network at its first activation's chosen settings."""
    results['memory'] = {}
    for row in results['configs']:
        if row['arch'] not in results['memory']:
            results['memory'][row['arch']] = {
                method: epoch_peak(
                    method, ARCHS[row['arch']], row['activation'], row['methods'][method]['chosen'], train_size
                )
                for method in ('SGD (Glorot init)', 'LPOM')
            }
    print('peak memory of one training epoch:', results['memory'], flush=True)


def write_tables(results, out: Path):
    (out / 'table.md').write_text(table(results))
    (out / 'tuning.md').write_text(tuning_table(results))


def tune(method, arch, activation, train, validation, epochs) -> dict:
    """Seed 0 over the method's grid, scored on the validation split; the best point, flagged if on an edge."""
    make, grid = METHODS[method][0], GRIDS[METHODS[method][1]]
    tried = [
        (hyper, run(make, ARCHS[arch], activation, 0, hyper, train, validation, epochs)[0][-1])
        for hyper in grid_points(grid)
    ]
    chosen, _ = max(tried, key=lambda t: t[1])
    at_edge = any(len(grid[k]) > 1 and v in (grid[k][0], grid[k][-1]) for k, v in chosen.items())
    return dict(grid=[dict(hyper=h, val=v) for h, v in tried], chosen=chosen, at_edge=at_edge)


def test(method, entry, arch, activation, train, test_set, epochs, seeds):
    """The chosen settings, one run per seed, scored on the test images."""
    make = METHODS[method][0] if method in METHODS else lpom(rho_max=0.9)
    runs = [run(make, ARCHS[arch], activation, seed, entry['chosen'], train, test_set, epochs) for seed in seeds]
    finals = [100 * curve[-1] for curve, _, _ in runs]
    entry.update(
        test=finals,
        test_mean=statistics.mean(finals),
        test_std=statistics.stdev(finals) if len(finals) > 1 else 0.0,
        curves=[curve for curve, _, _ in runs],
        epoch_s=statistics.median(s for _, seconds, _ in runs for s in seconds),
        extras=[extras for _, _, extras in runs],
    )
    print(
        f'{arch:20} {activation:8} {method:22} {entry["chosen"]} test {entry["test_mean"]:.2f} ± '
        f'{entry["test_std"]:.2f}  {entry["epoch_s"]:.2f} s/epoch',
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train', type=int, default=10000, help='first N training images')
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--archs', nargs='+', default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument('--activations', nargs='+', default=['relu', 'sigmoid'])
    parser.add_argument(
        '--redo',
        nargs='+',
        default=[],
        choices=list(METHODS),
        help='re-tune and re-test these methods in an existing results.json (e.g. after widening '
        'a grid whose edge was chosen); LPOM brings its rho_max variant',
    )
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--report', action='store_true', help="only write the tables from --out's results.json")
    parser.add_argument('--memory', action='store_true', help="only measure the memory again, into --out's results")
    args = parser.parse_args(argv)
    if args.report or args.memory:
        results = json.loads((args.out / 'results.json').read_text())
        if args.memory:
            measure_memory(results, results['settings']['train'])
            (args.out / 'results.json').write_text(json.dumps(results, indent=1) + '\n')
        return write_tables(results, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    train, validation, test_set = load(args.train)
    saved = args.out / 'results.json'
    results = (
        json.loads(saved.read_text())
        if args.redo
        else dict(settings=vars(args) | {'out': str(args.out)}, threads=torch.get_num_threads(), configs=[])
    )
    if args.redo:
        results.setdefault('redone', []).append(' '.join(argv if argv is not None else sys.argv[1:]))
    rows = {(row['arch'], row['activation']): row for row in results['configs']}
    for arch in args.archs:
        for activation in args.activations:
            row = rows.get((arch, activation)) or dict(arch=arch, activation=activation, methods={})
            for method in args.redo or METHODS:
                row['methods'][method] = tune(method, arch, activation, train, validation, args.epochs)
            if 'LPOM' in (args.redo or METHODS):
                row['methods']['LPOM, rho_max=0.9'] = dict(
                    chosen=row['methods']['LPOM']['chosen'], at_edge=False, grid=[]
                )
            for method, entry in row['methods'].items():
                if not args.redo or method in args.redo or (method == 'LPOM, rho_max=0.9' and 'LPOM' in args.redo):
                    test(method, entry, arch, activation, train, test_set, args.epochs, args.seeds)
            for grid_name, method in (('LPOM', 'LPOM'), ('SGD', 'SGD (Glorot init)'), ('Adam', 'Adam (Glorot init)')):
                vals = [100 * g['val'] for g in row['methods'][method]['grid']]
                row.setdefault('tuning_spread', {})[grid_name] = dict(
                    best=max(vals),
                    worst=min(vals),
                    std=statistics.pstdev(vals),
                    within_1_point=sum(v >= max(vals) - 1 for v in vals),
                    points=len(vals),
                )
            if (arch, activation) not in rows:
                results['configs'].append(row)
                rows[arch, activation] = row
            saved.write_text(json.dumps(results, indent=1) + '\n')  # a checkpoint per config
    measure_memory(results, args.train)
    saved.write_text(json.dumps(results, indent=1) + '\n')
    write_tables(results, args.out)
    print(table(results))


if __name__ == '__main__':
    main()
