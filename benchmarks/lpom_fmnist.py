"""LPOM against SGD with backpropagation and against a quadratic-penalty lifted baseline, on Fashion-MNIST.

Same architectures, same epochs, batch 100. SGD's learning rate is tuned on a validation split (the last 5k
training images, disjoint from the training subset); LPOM and the penalty baseline use fixed settings. Test
accuracy is measured on all 10k test images after every epoch, and wall time per epoch on this machine. A second
part times LPOM's parallel activation schedule (Jacobi) and parallel weight updates against the serial ones.

    python benchmarks/lpom_fmnist.py --train 20000 --epochs 3 --out benchmarks/results/lpom_fmnist
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets

from optnets.lpom import LPOM, get_activation
from optnets.lpom.solver import augment, forward, loss_value
from optnets.recipes.data import FashionMNISTDataModule, fashion_mnist_root

ARCHS = {'784-300-10': [784, 300, 10], '784-1000-500-250-10': [784, 1000, 500, 250, 10]}
SGD_RATES = (0.01, 0.03, 0.1, 0.3)


def load():
    FashionMNISTDataModule().prepare_data()
    train, test = (datasets.FashionMNIST(fashion_mnist_root(), train=t) for t in (True, False))
    as_float = lambda d: (d.data.reshape(len(d.data), -1).float() / 255, d.targets)  # noqa: E731
    return as_float(train), as_float(test)


def accuracy(logits, y):
    return (logits.argmax(1) == y).float().mean().item()


def mlp(layers, activation):
    act = get_activation(activation)
    modules = []
    for i, (d_in, d_out) in enumerate(zip(layers, layers[1:])):
        modules += [nn.Linear(d_in, d_out)] + ([act.module()] if i < len(layers) - 2 else [])
    return nn.Sequential(*modules)


def run_sgd(layers, activation, data, epochs, lr, seed):
    (x, y), (xt, yt) = data
    torch.manual_seed(seed)
    net = mlp(layers, activation)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    curve, seconds = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in torch.randperm(len(x)).split(100):
            opt.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
        with torch.no_grad():
            curve.append(accuracy(net(xt), yt))
    return curve, seconds


class PenaltyLifted:
    """Quadratic-penalty lifted training (MAC-style): ``l(X[n]) + mu/2 sum ||X[i+1] - phi(W[i]X[i])||^2`` by block
    coordinate gradient steps on each block's own terms (no chain through the network), like LPOM's blocks but
    with the penalty in place of LPOM's f and g. Step sizes are ``lr`` over each block's Lipschitz bound."""

    def __init__(self, layers, activation, mu=1.0, lr_x=1.0, lr_w=1.0, iters=5, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.acts = [get_activation(activation)] * (len(layers) - 2) + [get_activation('identity')]
        self.weights = [torch.cat([(torch.rand(o, i, generator=gen) * 2 - 1) * (6 / (i + o)) ** 0.5,
                                   torch.zeros(o, 1)], 1) for i, o in zip(layers, layers[1:])]
        self.mu, self.lr_x, self.lr_w, self.iters = mu, lr_x, lr_w, iters

    def _local(self, xs, i, target):
        """The terms that hold X[i] (i >= 1): the penalty into it, the penalty out of it, and the loss."""
        act = self.acts[i - 1]
        total = self.mu / 2 * ((xs[i] - act.phi(augment(xs[i - 1]) @ self.weights[i - 1].T)) ** 2).sum()
        if i < len(self.weights):
            total = total + self.mu / 2 * ((xs[i + 1] - self.acts[i].phi(augment(xs[i]) @ self.weights[i].T)) ** 2).sum()
        else:
            total = total + loss_value('cross_entropy', xs[i], target)
        return total

    def step(self, x, y):
        target = F.one_hot(y, self.weights[-1].shape[0]).float()
        xs = forward(self.weights, x, self.acts)
        for _ in range(self.iters):
            for i in range(1, len(xs)):
                block = xs[i].clone().requires_grad_()
                grad, = torch.autograd.grad(self._local([*xs[:i], block, *xs[i + 1:]], i, target), block)
                out = self.weights[i][:, :-1] if i < len(self.weights) else torch.zeros(1, 1)
                lipschitz = self.mu * (1 + self.acts[min(i, len(self.acts) - 1)].lipschitz ** 2
                                       * torch.linalg.matrix_norm(out, 2) ** 2) + (i == len(self.weights))
                xs[i] = (block - self.lr_x / lipschitz * grad).detach()
        for i, weight in enumerate(self.weights):
            w = weight.clone().requires_grad_()
            xa = augment(xs[i])
            lipschitz = self.mu * self.acts[i].lipschitz ** 2 * torch.linalg.matrix_norm(xa, 2) ** 2
            for _ in range(self.iters):
                loss = self.mu / 2 * ((xs[i + 1] - self.acts[i].phi(xa @ w.T)) ** 2).sum()
                grad, = torch.autograd.grad(loss, w)
                w = (w - self.lr_w / lipschitz * grad).detach().requires_grad_()
            self.weights[i] = w.detach()

    def logits(self, x):
        return forward(self.weights, x, self.acts)[-1]


def run_lifted(model, data, epochs, seed):
    (x, y), (xt, yt) = data
    gen = torch.Generator().manual_seed(seed)
    curve, seconds = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        if isinstance(model, LPOM):
            model.fit(x, y, epochs=1, batch_size=100)
        else:
            for batch in torch.randperm(len(x), generator=gen).split(100):
                model.step(x[batch], y[batch])
        seconds.append(time.perf_counter() - start)
        logits = model.decision_function(xt) if isinstance(model, LPOM) else model.logits(xt)
        curve.append(accuracy(logits, yt))
    return curve, seconds


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = sorted({(r['arch'], r['activation']) for r in rows})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), sharey=True)
    for ax, (arch, act) in zip(axes, keys):
        for r in rows:
            if (r['arch'], r['activation']) == (arch, act):
                ax.plot(range(1, len(r['test_acc']) + 1), [100 * a for a in r['test_acc']], 'o-', label=r['method'])
        ax.set(title=f'{arch}, {act}', xlabel='epoch')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('test accuracy (%)')
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train', type=int, default=20000, help='first N training images')
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--mu', type=float, default=10.0)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--parts', nargs='+', choices=('accuracy', 'parallel', 'mu'), default=['accuracy', 'parallel'])
    parser.add_argument('--out', type=Path)
    args = parser.parse_args(argv)
    (x, y), test = load()
    data = ((x[:args.train], y[:args.train]), test)
    validation = ((x[:args.train], y[:args.train]), (x[-5000:], y[-5000:]))
    rows, mu_rows = [], []

    def record(method, arch, act, curve, seconds, into=rows, **extra):
        into.append(dict(method=method, arch=arch, activation=act, test_acc=curve, epoch_seconds=seconds, **extra))
        print(f'{method:28} {arch:20} {act:8} test {100 * curve[-1]:6.2f}%  {sum(seconds) / len(seconds):6.1f} s/epoch',
              flush=True)

    for arch, layers in ARCHS.items() if 'accuracy' in args.parts else ():
        for act in ('relu', 'sigmoid'):
            tuned = {lr: run_sgd(layers, act, validation, args.epochs, lr, args.seed)[0][-1] for lr in SGD_RATES}
            lr = max(tuned, key=tuned.get)
            record(f'SGD+backprop (lr {lr:g})', arch, act, *run_sgd(layers, act, data, args.epochs, lr, args.seed),
                   validation=tuned)
            lpom = LPOM(layers, activation=act, mu=args.mu, seed=args.seed, progress=False)
            record('LPOM', arch, act, *run_lifted(lpom, data, args.epochs, args.seed))
            penalty = PenaltyLifted(layers, act, seed=args.seed)
            record('quadratic penalty (lifted)', arch, act, *run_lifted(penalty, data, args.epochs, args.seed))

    if 'accuracy' in args.parts:  # the paper's output layer (phi on the output, MSE) against the default
        paper = LPOM(ARCHS['784-300-10'], activation='relu', out_activation='relu', loss='mse', mu=args.mu,
                     seed=args.seed, progress=False)
        record('LPOM, relu output + MSE', '784-300-10', 'relu', *run_lifted(paper, data, args.epochs, args.seed))

    for mu in (0.1, 1.0, 10.0) if 'mu' in args.parts else ():  # how the default mu was chosen
        model = LPOM(ARCHS['784-300-10'], mu=mu, seed=args.seed, progress=False)
        record(f'LPOM, mu={mu:g}', '784-300-10', 'relu', *run_lifted(model, data, args.epochs, args.seed),
               into=mu_rows)

    parallel = []
    for arch, layers in ARCHS.items() if 'parallel' in args.parts else ():
        for name, kwargs in (('serial', {}), ('parallel weights', dict(parallel_weights=True)),
                             ('Jacobi activations', dict(schedule='parallel')),
                             ('Jacobi + parallel weights', dict(schedule='parallel', parallel_weights=True))):
            model = LPOM(layers, mu=args.mu, seed=args.seed, progress=False, **kwargs)
            curve, seconds = run_lifted(model, data, 1, args.seed)
            parallel.append(dict(arch=arch, variant=name, test_acc=curve[-1], epoch_seconds=seconds[0]))
    for p in parallel:
        base = next(q for q in parallel if q['arch'] == p['arch'] and q['variant'] == 'serial')
        p['time_ratio'] = p['epoch_seconds'] / base['epoch_seconds']
        print(f'{p["arch"]:20} {p["variant"]:26} {p["epoch_seconds"]:6.1f} s/epoch ({p["time_ratio"]:.2f}x serial)'
              f'  test {100 * p["test_acc"]:.2f}% after 1 epoch', flush=True)

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for part, results in (('accuracy', rows), ('parallel', parallel), ('mu', mu_rows)):
            if part in args.parts:
                (args.out / f'{part}.json').write_text(json.dumps(
                    dict(settings=vars(args) | {'out': str(args.out)}, threads=torch.get_num_threads(),
                         results=results), indent=1))
        if 'accuracy' in args.parts:
            plot([r for r in rows if not r['method'].startswith('LPOM,')], args.out / 'test_accuracy.png')


if __name__ == '__main__':
    main()
