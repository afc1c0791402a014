"""Stored, reversible and the ``momentumnet`` package's memory, side by side in one run: Momentum ResNets of
growing depth (CIFAR widths), then 1000 steps a stage.

    OMP_NUM_THREADS=1 python -m benchmarks.memory --steps 2 8 17 --batch 32 --long-steps 1000 --long-batch 4

Per depth and mode: the bytes autograd saves for backward in one training forward (exact, through
``torch.autograd.graph.saved_tensors_hooks``; parameters excluded; the package's saved iterates and bit stores
counted too), the peak resident memory of a child process that builds the model and runs one training step
(Linux's VmHWM, so the interpreter and the weights are in it too), the median time of a training step (forward +
backward), the modes interleaved, and how far each mode's gradient is from the stored one's and from the stored
network's in float64 (relative norms). BN scales and shifts are random, so that every T does something.
The ``momentumnet`` mode is the same network (the same T modules) with each stage's steps run by the package's
``MomentumNet(use_backprop=False)``. Writes results.json, table.md (the README's table) and memory.png.
"""

import argparse
import copy
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import timm
import torch

import optnets  # noqa: F401  (registers the models)
from tests.helpers import randomise_norms

MODES = ('stored', 'reversible', 'momentumnet')


def build(steps: int, memory: str):
    """Momentum ResNet with ``steps`` steps after each stage's transition (depth 6 * (steps + 1) + 2), its BN
    scales and shifts drawn at random (the same in every mode): at timm's initialisation the last BN of each T is
    zero, T is a constant, and every mode would rebuild its iterates trivially."""
    torch.manual_seed(0)
    model = randomise_norms(  # BN scales in [0.5, 1.5], shifts in [-0.2, 0.2], from the seed above
        timm.create_model(
            'momentum_net_20_cifar', steps=(steps,) * 3, memory='stored' if memory == 'momentumnet' else memory
        ).train(),
        shift=0.2,
        statistics=False,
        seed=None,
    )
    if memory == 'momentumnet':
        from momentumnet import MomentumNet

        model.stages = torch.nn.Sequential(
            *(
                torch.nn.Sequential(stage.transition, MomentumNet(list(stage.T_x), gamma=0.9, use_backprop=False))
                for stage in model.stages
            )
        )
    return model


def depth(steps: int) -> int:
    return 6 * (steps + 1) + 2


def saved_bytes(model, x) -> int:
    params = {p.data_ptr() for p in model.parameters()}
    seen, total = set(), [0]

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if t.untyped_storage().data_ptr() not in params and key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return total[0]


def _peak_child(steps, memory, batch, queue):
    torch.set_num_threads(1)
    model, x = build(steps, memory), torch.randn(batch, 3, 32, 32)
    model(x).square().mean().backward()
    # VmHWM belongs to this process's own memory map; ru_maxrss would keep the forking parent's high-water mark
    status = dict(line.split(':', 1) for line in open('/proc/self/status'))
    queue.put(int(status['VmHWM'].split()[0]) * 1024)


def peak_rss(steps: int, memory: str, batch: int) -> int:
    queue = multiprocessing.get_context('spawn').Queue()
    child = multiprocessing.get_context('spawn').Process(target=_peak_child, args=(steps, memory, batch, queue))
    child.start()
    peak = queue.get()
    child.join()
    return peak


def step_times(models: dict, x, repeats: int) -> dict:
    """Median seconds of a training step for each mode, and of the stored network's forward without a graph
    (``'forward'``): a step that rebuilds its iterates re-runs each T in backward, so it cannot take less than the
    stored step plus about that forward (the floor)."""
    times = {name: [] for name in (*models, 'forward')}
    for _ in range(repeats):
        for memory, model in models.items():  # interleaved: the machine's drift hits all modes alike
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            model(x).square().mean().backward()
            times[memory].append(time.perf_counter() - start)
        with torch.no_grad():
            start = time.perf_counter()
            models['stored'](x)
            times['forward'].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def gradient_errors(models: dict, x) -> dict:
    """Each mode's last gradient (relative norm over all parameters) against the stored mode's, and against the
    stored network's gradient in float64 on the same batch: float32 rounding alone puts the stored mode at some
    distance from that one, so the second figure tells which mode is closer to exact.
    Summed parameter by parameter: at 1000 steps a stage a flat copy of every gradient would not fit."""
    exact = copy.deepcopy(models['stored']).double()
    exact.zero_grad(set_to_none=True)
    exact(x.double()).square().mean().backward()
    references = {
        'stored': [p.grad.double() for p in models['stored'].parameters()],
        'float64': [p.grad for p in exact.parameters()],
    }
    errors = {memory: {} for memory in models}
    for to, key in (('stored', 'grad_error'), ('float64', 'grad_error_float64')):
        norm = sum(float(r.square().sum()) for r in references[to]) ** 0.5
        for memory, model in models.items():
            errors[memory][key] = (
                sum(float((p.grad - r).square().sum()) for p, r in zip(model.parameters(), references[to])) ** 0.5
                / norm
            )
    return errors


def rebuild_error(steps: int = 100, batch: int = 8, seed: int = 0) -> dict:
    """How far iterates rebuilt backwards (float64 sums, T in float32, no anchors) drift from the forward's, against
    the number of steps rebuilt: ``{distance: relative error}``, on the first stage."""
    from optnets.compiler.reversible import WIDER, combine, rebuild

    torch.manual_seed(seed)
    stage = build(steps, 'reversible').stages[0]
    with torch.no_grad():
        x0 = torch.randn(batch, 16, 32, 32)
        wide = WIDER[x0.dtype]
        coefficients = [
            stage.invertible.coefficients(lambda name, j: stage._value(name, k, j))  # noqa: B023
            for k in range(steps)
        ]
        xs = [x0.to(wide), x0.to(wide)]  # x[-1], x[0], x[1], ...
        for k, (alpha, beta, gamma) in enumerate(coefficients):
            xs.append(combine(stage.T_x[k](xs[-1].to(x0.dtype)).to(wide), xs[-1], xs[-2], alpha, beta, gamma))
        x_next, x, errors = xs[-1], xs[-2], {}
        for k in reversed(range(1, steps)):
            before = rebuild(x_next, x, stage.T_x[k](x.to(x0.dtype)).to(wide), *coefficients[k])
            errors[steps - k] = float((before - xs[k]).norm() / xs[k].norm())
            x_next, x = x, before
    return errors


def measure(steps: int, batch: int, repeats: int) -> dict:
    x, models = torch.randn(batch, 3, 32, 32), {memory: build(steps, memory) for memory in MODES}
    seconds = step_times(models, x, repeats)
    errors = gradient_errors(models, x)
    row = dict(
        depth=depth(steps), steps_per_stage=steps, batch=batch, floor_ratio=1 + seconds['forward'] / seconds['stored']
    )
    for memory, model in models.items():
        row[memory] = dict(
            saved_mb=saved_bytes(model, x) / 2**20,
            peak_rss_mb=peak_rss(steps, memory, batch) / 2**20,
            step_s=seconds[memory],
            **errors[memory],
        )
    for memory in MODES[1:]:
        row[memory].update(
            saved_ratio=row[memory]['saved_mb'] / row['stored']['saved_mb'],
            time_ratio=row[memory]['step_s'] / row['stored']['step_s'],
        )
    print(
        f'depth {row["depth"]} ({steps} steps a stage, batch {batch}): saved '
        + ', '.join(f'{m} {row[m]["saved_mb"]:.1f} MB' for m in MODES)
        + '; step '
        + ', '.join(f'{m} {row[m]["time_ratio"]:.2f}x' for m in MODES[1:])
        + f' (floor {row["floor_ratio"]:.2f}x)'
        + '; gradient error against stored, float64: '
        + ', '.join(f'{m} {row[m]["grad_error"]:.1e} {row[m]["grad_error_float64"]:.1e}' for m in MODES),
        flush=True,
    )
    return row


def table(results: dict) -> str:
    """The README's table: one row a depth, from results.json."""
    lines = [
        '| depth (steps a stage), batch | saved: stored / reversible / momentumnet | peak RSS | step time: '
        'reversible / momentumnet (floor) | gradient error against stored: reversible / momentumnet | '
        'against float64: stored / reversible / momentumnet |',
        '|---|---|---|---|---|---|',
    ]
    for row in results['rows'] + ([results['long']] if results['long'] else []):
        saved = ' / '.join(f'{row[m]["saved_mb"]:.1f}' for m in MODES)
        lines.append(
            f'| {row["depth"]} ({row["steps_per_stage"]}), {row["batch"]} | {saved} MB '
            f'({row["reversible"]["saved_ratio"]:.3f}x) | '
            + ' / '.join(f'{row[m]["peak_rss_mb"]:.0f}' for m in MODES)
            + ' MB | '
            + ' / '.join(f'{row[m]["time_ratio"]:.2f}x' for m in MODES[1:])
            + f' ({row["floor_ratio"]:.2f}x) | '
            + ' / '.join(f'{row[m]["grad_error"]:.1e}' for m in MODES[1:])
            + ' | '
            + ' / '.join(f'{row[m]["grad_error_float64"]:.1e}' for m in MODES)
            + ' |'
        )
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, nargs='+', default=[2, 8, 17], help='steps a stage (depth 20, 56, 110)')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--long-steps', type=int, default=1000)
    parser.add_argument('--long-batch', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=11)
    parser.add_argument('--long-repeats', type=int, default=3)
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results' / 'memory')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    errors = rebuild_error()
    print(
        "rebuilt iterates against the forward's (relative), by steps rebuilt: "
        + ', '.join(f'{d}: {e:.0e}' for d, e in errors.items() if d in (1, 8, 16, 24, 32, 40, 48, 64, 80, 99)),
        flush=True,
    )
    rows = [measure(steps, args.batch, args.repeats) for steps in args.steps]
    long = measure(args.long_steps, args.long_batch, args.long_repeats) if args.long_steps else None
    results = dict(args={k: str(v) for k, v in vars(args).items()}, rows=rows, long=long, rebuild_error=errors)
    (args.out / 'results.json').write_text(json.dumps(results, indent=1) + '\n')
    (args.out / 'table.md').write_text(table(results))
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for memory in MODES:
        ax.plot([r['depth'] for r in rows], [r[memory]['saved_mb'] for r in rows], marker='o', label=memory)
    ax.set(
        xlabel='depth (Momentum ResNet, CIFAR widths)',
        ylabel='activations saved for backward (MB)',
        title=f'batch {args.batch}, 32x32',
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / 'memory.png', dpi=120)


if __name__ == '__main__':
    main()
