"""optnets models against the timm models they generalise: train-step time, memory, fused inference time.

All models are built and measured in one process, the runs interleaved round by round (these machines are
noisy), and every figure is reported as a ratio to its baseline measured in the same rounds. Memory is the
activation memory of a train step, parameters left out: CUDA's peak above the model on a GPU; on a CPU, where
torch keeps no allocation peak, the bytes of the tensors autograd saves for backward.

    python benchmarks/vs_timm.py --out benchmarks/results/vs_timm/run1.json
    python benchmarks/vs_timm.py --compile --out benchmarks/results/vs_timm/compile/run1.json

``--compile`` measures ``torch.compile`` (inductor) instead: the time of the first compiled train step and of the
first compiled fused inference (compilation included, each in an empty cache of its own), then the compiled train
step and the compiled fused inference. Runs of it are summarised by benchmarks/vs_timm_table.py.
"""

import argparse
import functools
import json
import platform
import statistics
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

import optnets  # noqa: F401  (registers the families)

PAIRS = [('hb_net_34', 'resnet34'), ('agd_net_121', 'densenet121'), ('admm_net_34', 'resnet34')]


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def train_step(model, x, y, optimizer):
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def train_memory(model, x, y, device) -> int:
    """Activation memory of one train step, parameters left out (they would hide the difference): CUDA's peak
    above what was allocated before, or on a CPU the bytes of the distinct storages autograd saves for backward."""
    if device.type == 'cuda':
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
        return torch.cuda.max_memory_allocated() - before
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def perturb_coefficients(model, scale=0.05):
    """Move the coefficients off their special values, as training does, so fuse() has real work to fold."""
    with torch.no_grad():
        for _, p in model.named_coefficients():
            p.add_(torch.randn_like(p) * scale)


def interleaved(fns: dict, rounds: int, device) -> dict:
    """The median time of each function over rounds that run every function once, in turn."""
    times = {n: [] for n in fns}
    for _ in range(rounds):
        for n, fn in fns.items():
            times[n].append(timed(fn, device))
    return {n: statistics.median(t) for n, t in times.items()}


def fused(models: dict) -> dict:
    """The models in eval mode, fused where they can be, coefficients moved off their special values first."""
    for m in models.values():
        m.eval()
        if hasattr(m, 'fuse'):
            perturb_coefficients(m)
            m.fuse()
    return models


def eager_costs(models, x, y, optimizers, rounds, device) -> dict:
    """Train step (s), activation memory of a train step (bytes), fused inference (s), in eager mode."""
    memory = {n: train_memory(m.train(), x, y, device) for n, m in models.items()}
    steps = {n: functools.partial(train_step, m, x, y, optimizers[n]) for n, m in models.items()}
    for step in steps.values():  # warm-up
        step()
    train = interleaved(steps, rounds, device)
    with torch.inference_mode():
        forwards = {n: functools.partial(m, x) for n, m in fused(models).items()}
        for forward in forwards.values():
            forward()
        infer = interleaved(forwards, rounds, device)
    return dict(train_step=train, activation_memory=memory, fused_inference=infer)


def warm_up(device) -> None:
    """Compile a small convolutional network's train step and inference: inductor's one-time costs (its workers,
    the compiler's checks, the lowerings and kernel templates a convolutional network loads on first use), which the
    first model compiled in a process would otherwise pay alone."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).to(device)
    x = torch.randn(2, 3, 16, 16, device=device)
    F.cross_entropy(torch.compile(net)(x), torch.zeros(2, dtype=torch.long, device=device)).backward()
    with torch.inference_mode():
        torch.compile(net.eval())(x)


def compiled_costs(models, x, y, optimizers, rounds, device) -> dict:
    """Under torch.compile (inductor): the first train step and the first fused inference, each compiled cold (an
    empty cache of its own: no model reuses another's kernels), and the compiled train step and fused inference."""
    from torch._inductor.utils import fresh_cache

    def cold(fns: dict) -> dict:
        seconds = {}
        for n, fn in fns.items():
            with fresh_cache():
                seconds[n] = timed(fn, device)
        return seconds

    with fresh_cache():  # inductor's one-time start-up, so that the first model measured does not pay it
        warm_up(device)
    steps = {n: functools.partial(train_step, torch.compile(m.train()), x, y, optimizers[n]) for n, m in models.items()}
    compile_train = cold(steps)
    train = interleaved(steps, rounds, device)
    with torch.inference_mode():
        forwards = {n: functools.partial(torch.compile(m), x) for n, m in fused(models).items()}
        compile_infer = cold(forwards)
        infer = interleaved(forwards, rounds, device)
    return dict(
        compile_train=compile_train,
        compile_inference=compile_infer,
        compiled_train_step=train,
        compiled_fused_inference=infer,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--rounds', type=int, default=7, help='interleaved rounds; medians are reported')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--compile', action='store_true', help='measure torch.compile instead of eager mode')
    parser.add_argument('--models', nargs='+', help=f'only these of {[ours for ours, _ in PAIRS]}')
    parser.add_argument('--out', type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    pairs = [(ours, base) for ours, base in PAIRS if not args.models or ours in args.models]
    names = sorted({n for pair in pairs for n in pair})
    models = {n: timm.create_model(n).to(device) for n in names}
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    optimizers = {n: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for n, m in models.items()}

    measure = compiled_costs if args.compile else eager_costs
    figures = measure(models, x, y, optimizers, args.rounds, device)
    rows = [
        dict(
            model=ours,
            baseline=base,
            **{f'{k}_ratio': v[ours] / v[base] for k, v in figures.items()},
            **{k: v[ours] for k, v in figures.items()},
            **{f'baseline_{k}': v[base] for k, v in figures.items()},
        )
        for ours, base in pairs
    ]
    print(
        f'device {device} ({platform.processor() or platform.machine()}), batch {args.batch_size}, '
        f'{args.image_size}px, median of {args.rounds} interleaved rounds'
        + (', torch.compile (inductor)' if args.compile else '')
    )
    print(f'{"model":13} {"baseline":12} ' + ' '.join(f'{k:>20}' for k in figures))
    for r in rows:
        print(f'{r["model"]:13} {r["baseline"]:12} ' + ' '.join(f'{r[f"{k}_ratio"]:19.3f}x' for k in figures))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                dict(
                    settings=vars(args) | {'out': str(args.out), 'device': str(device)},
                    torch=torch.__version__,
                    timm=timm.__version__,
                    rows=rows,
                ),
                indent=1,
            )
        )
    return rows


if __name__ == '__main__':
    main()
