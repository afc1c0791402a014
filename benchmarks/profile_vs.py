"""Where a model's train step (or fused inference) spends its time beyond its baseline's: torch.profiler's self
CPU time per op, summed over a few steps of each model, and the difference, largest first.

    python benchmarks/profile_vs.py agd_net_121 densenet121 --image-size 128 --batch-size 8
    python benchmarks/profile_vs.py hb_net_34 resnet34 --inference
    python benchmarks/profile_vs.py agd_net_121 densenet121 --compile --image-size 64 --batch-size 4

``--compile`` profiles the inductor-compiled step, with inductor's kernels recorded one by one; their names carry
a graph and a counter that differ between two models, so kernels are summed by what they compute (both dropped).
"""

import argparse
import re

import timm
import torch
import torch._inductor.config
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import optnets  # noqa: F401  (registers the families)
from vs_timm import perturb_coefficients


def self_times(name: str, x, y, steps: int, inference: bool, compiled: bool) -> dict[str, tuple[float, int]]:
    """op -> (self CPU seconds over ``steps`` train steps or fused inference forwards, calls)."""
    model = timm.create_model(name)
    if inference:
        model.eval()
        if hasattr(model, 'fuse'):
            perturb_coefficients(model)
            model.fuse()
    forward = torch.compile(model) if compiled else model
    if inference:
        step = torch.inference_mode()(forward)
    else:
        step = lambda x, y: F.cross_entropy(forward(x), y).backward()  # noqa: E731
    for _ in range(2):  # warm-up
        step(x) if inference else step(x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(x) if inference else step(x, y)
    times = {}
    for e in prof.key_averages():
        key = re.sub(r'^graph_\d+_(cpp_fused_.*)_\d+$|^(## Call CompiledFxGraph) .*', r'\1\2', e.key)
        seconds, calls = times.get(key, (0.0, 0))
        times[key] = (seconds + e.self_cpu_time_total / 1e6, calls + e.count)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model')
    parser.add_argument('baseline')
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--rows', type=int, default=15)
    parser.add_argument('--inference', action='store_true', help='eval() forward after fuse(), as vs_timm.py')
    parser.add_argument('--compile', action='store_true', help='the torch.compile (inductor) step')
    args = parser.parse_args(argv)
    torch._inductor.config.cpp.enable_kernel_profile = args.compile
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, 1000, (args.batch_size,))
    ours, base = (self_times(n, x, y, args.steps, args.inference, args.compile) for n in (args.model, args.baseline))
    total = sum(t for t, _ in ours.values()), sum(t for t, _ in base.values())
    what = 'fused inference forwards' if args.inference else 'train steps'
    print(
        f'self CPU time of {args.steps} {what}: {args.model} {total[0]:.3f} s, {args.baseline} '
        f'{total[1]:.3f} s ({total[0] / total[1]:.3f}x)'
    )
    print(f'{"op":60} {"difference":>10} {"calls":>12}')
    diffs = sorted(
        ((ours.get(k, (0, 0))[0] - base.get(k, (0, 0))[0], k) for k in ours.keys() | base.keys()), reverse=True
    )
    for diff, key in diffs[: args.rows]:
        calls = f'{ours.get(key, (0, 0))[1]} vs {base.get(key, (0, 0))[1]}'
        print(f'{key[:60]:60} {1000 * diff:8.1f}ms {calls:>12}')


if __name__ == '__main__':
    main()
