"""The talk's hypothesis, measured: does a faster optimization algorithm give a better network?

    python benchmarks/algorithm_vs_accuracy.py --parts rates accuracy --out benchmarks/results/algorithm_vs_accuracy

For each built-in algorithm: its convergence rate on a family of convex quadratics (condition numbers 10, 100,
1000; the rule itself iterated by the reference semantics with its ``theory`` coefficients and T its step map or
increment, by its reading: ``rate = (|x_K - x*| / |x_0 - x*|)^(1/K)``), next to the Fashion-MNIST test accuracy of
its network at ``coeff_init='theory'``, all at ResNet-20's parameter count (0.27M) and one training budget, the
recipe's settings for all (none tuned), 3 seeds.
"""

import argparse
import json
from pathlib import Path

import torch

import optnets
from optnets import rules
from optnets.rules.semantics import evaluate, output

NETWORKS = {  # algorithm -> (timm name, depth to register() it at, or None for a family member)
    'gd': ('avb_gd_20', 20),
    'heavy_ball': ('hb_net_20_cifar', None),
    'nesterov': ('avb_nesterov_20', 20),
    'agd': ('avb_agd_22', 22),  # DenseNet layout of depth 22, growth 12: 0.271M parameters
    'admm': ('avb_admm_14', 14),  # two streams: one step a stage, ResNet-20's parameters
    'momentum': ('momentum_net_20_cifar', None),  # gamma fixed, as in the paper
    'linear_multistep': ('lm_net_20_cifar', None),
}
CONDITIONS, SIZE, ITERATIONS = (10, 100, 1000), 20, 200


def rate(rule, condition: float, seed: int = 0) -> float:
    """The rule's linear rate on f(z) = z'Az/2 - b'z with eigenvalues in [1/condition, 1] and step 1/L."""
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(SIZE, SIZE, generator=g, dtype=torch.float64))[0]
    a = q @ torch.diag(torch.logspace(-torch.log10(torch.tensor(float(condition))), 0, SIZE, dtype=torch.float64)) @ q.T
    b = torch.randn(SIZE, generator=g, dtype=torch.float64)
    solution = torch.linalg.solve(a, b)
    step = lambda z: z - (a @ z - b)  # noqa: E731
    T = step if rule.reading == 'step' else (lambda z: step(z) - z)
    theory = {c.name: c for c in optnets.compile_rule(rule).coefficients}
    z0 = torch.zeros(SIZE, dtype=torch.float64)
    history = evaluate(rule, z0, ITERATIONS, lambda k, s, j: T, lambda n, k, j: theory[n].value('theory', k, j))
    last = output(rule, history, lambda h: h[-1])
    return float(((last - solution).norm() / (z0 - solution).norm()) ** (1 / ITERATIONS))


def accuracy(name: str, seed: int, args) -> dict:
    from optnets.recipes.compare import train_once

    return train_once(name, {'coeff_init': 'theory'}, seed, args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--parts', nargs='+', default=['rates', 'accuracy'], choices=['rates', 'accuracy'])
    parser.add_argument('--algorithms', nargs='+', default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--train-subset', type=int, default=5000)
    parser.add_argument('--out', type=Path, default=Path('benchmarks/results/algorithm_vs_accuracy'))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    file = args.out / 'results.json'
    results = json.loads(file.read_text()) if file.is_file() else {}
    for algorithm in args.algorithms:
        name, depth = NETWORKS[algorithm]
        rule = rules.BUILTIN[algorithm]
        if depth is not None:
            optnets.register(name, rule, depth=depth)
        entry = results.setdefault(algorithm, {'model': name})
        if 'rates' in args.parts:
            entry['rates'] = {str(c): rate(rule, c) for c in CONDITIONS}
        if 'accuracy' in args.parts and entry.get('seeds') != args.seeds:  # done entries are kept: resumable
            train_args = argparse.Namespace(
                batch_size=128,
                workers=0,
                train_subset=args.train_subset,
                test_subset=None,
                lr=0.1,
                epochs=args.epochs,
                progress=False,
            )
            runs = [accuracy(name, seed, train_args) for seed in args.seeds]
            top1 = torch.tensor([100 * r['top1'][-1] for r in runs])
            entry.update(
                seeds=args.seeds,
                test_top1=top1.tolist(),
                mean=top1.mean().item(),
                std=top1.std().item() if len(runs) > 1 else 0.0,
                budget=f'first {args.train_subset} training images x {args.epochs} epochs',
            )
        print(algorithm, {k: v for k, v in entry.items() if k != 'test_top1'}, flush=True)
        file.write_text(json.dumps(results, indent=1) + '\n')
    plot(results, args.out / 'rate_vs_accuracy.png')


def plot(results: dict, path: Path):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algorithm, entry in results.items():
        if 'rates' in entry and 'mean' in entry:
            x = entry['rates'][str(CONDITIONS[1])]
            ax.errorbar(x, entry['mean'], yerr=entry['std'], marker='o', capsize=3)
            ax.annotate(algorithm, (x, entry['mean']), fontsize=8, xytext=(4, 4), textcoords='offset points')
    ax.set(
        xlabel=f'convergence rate on quadratics, condition {CONDITIONS[1]} (lower is faster)',
        ylabel='Fashion-MNIST test top-1 (%)',
        title='Faster algorithm, better network?',
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == '__main__':
    main()
