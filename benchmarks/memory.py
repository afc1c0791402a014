"""Stored against reversible memory, side by side in one run: Momentum ResNets of growing depth (CIFAR widths).

    OMP_NUM_THREADS=1 python benchmarks/memory.py --depths 20 56 110 --batch 32 --out benchmarks/results/memory

Per depth and mode: the bytes autograd saves for backward in one training forward (exact, through
``torch.autograd.graph.saved_tensors_hooks``; parameters excluded), the peak resident memory of a child process
that builds the model and runs one training step (Linux's VmHWM, so the interpreter and the weights are in it
too), and the median time of a training step (forward + backward), the modes interleaved. Writes results.json and
memory.png.
"""
import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import timm
import torch

import optnets  # noqa: F401  (registers the models)


def build(depth: int, memory: str):
    torch.manual_seed(0)
    return timm.create_model(f'momentum_net_{depth}_cifar', memory=memory).train()


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


def _peak_child(depth, memory, batch, queue):
    torch.set_num_threads(1)
    model, x = build(depth, memory), torch.randn(batch, 3, 32, 32)
    model(x).square().mean().backward()
    # VmHWM belongs to this process's own memory map; ru_maxrss would keep the forking parent's high-water mark
    status = dict(line.split(':', 1) for line in open('/proc/self/status'))
    queue.put(int(status['VmHWM'].split()[0]) * 1024)


def peak_rss(depth: int, memory: str, batch: int) -> int:
    queue = multiprocessing.get_context('spawn').Queue()
    child = multiprocessing.get_context('spawn').Process(target=_peak_child, args=(depth, memory, batch, queue))
    child.start()
    peak = queue.get()
    child.join()
    return peak


def step_times(models: dict, x, repeats: int) -> dict:
    times = {memory: [] for memory in models}
    for _ in range(repeats):
        for memory, model in models.items():  # interleaved: the machine's drift hits both modes alike
            start = time.perf_counter()
            model(x).square().mean().backward()
            times[memory].append(time.perf_counter() - start)
    return {memory: statistics.median(t) for memory, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--depths', type=int, nargs='+', default=[20, 56, 110])
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results' / 'memory')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    x, rows = torch.randn(args.batch, 3, 32, 32), []
    for depth in args.depths:
        models = {memory: build(depth, memory) for memory in ('stored', 'reversible')}
        seconds = step_times(models, x, args.repeats)
        row = dict(depth=depth, batch=args.batch)
        for memory, model in models.items():
            row[memory] = dict(saved_mb=saved_bytes(model, x) / 2**20, peak_rss_mb=peak_rss(depth, memory,
                               args.batch) / 2**20, step_s=seconds[memory])
        row['saved_ratio'] = row['reversible']['saved_mb'] / row['stored']['saved_mb']
        row['time_ratio'] = row['reversible']['step_s'] / row['stored']['step_s']
        rows.append(row)
        print(f"depth {depth}: saved {row['stored']['saved_mb']:.1f} -> {row['reversible']['saved_mb']:.1f} MB "
              f"({row['saved_ratio']:.2f}x), peak RSS {row['stored']['peak_rss_mb']:.0f} -> "
              f"{row['reversible']['peak_rss_mb']:.0f} MB, step {row['time_ratio']:.2f}x", flush=True)
    (args.out / 'results.json').write_text(json.dumps(dict(args={k: str(v) for k, v in vars(args).items()},
                                                           rows=rows), indent=1) + '\n')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for memory in ('stored', 'reversible'):
        ax.plot([r['depth'] for r in rows], [r[memory]['saved_mb'] for r in rows], marker='o', label=memory)
    ax.set(xlabel='depth (Momentum ResNet, CIFAR)', ylabel='activations saved for backward (MB)',
           title=f'batch {args.batch}, 32x32')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / 'memory.png', dpi=120)


if __name__ == '__main__':
    main()
