"""optnets models against the timm models they generalise: train-step time, memory, fused inference time.

All models are built and measured in one process, the runs interleaved round by round (these machines are
noisy), and every figure is reported as a ratio to its baseline measured in the same rounds. Memory is the
activation memory of a train step, parameters left out: CUDA's peak above the model on a GPU; on a CPU, where
torch keeps no allocation peak, the bytes of the tensors autograd saves for backward.

    python benchmarks/vs_timm.py --out benchmarks/results/vs_timm/run1.json

Runs of it are summarised by benchmarks/vs_timm_table.py.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--rounds', type=int, default=7, help='interleaved rounds; medians are reported')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    names = sorted({n for pair in PAIRS for n in pair})
    models = {n: timm.create_model(n).to(device) for n in names}
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    optimizers = {n: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for n, m in models.items()}

    memory = {n: train_memory(m.train(), x, y, device) for n, m in models.items()}
    train_times = {n: [] for n in names}
    for n, m in models.items():  # warm-up
        train_step(m, x, y, optimizers[n])
    for _ in range(args.rounds):
        for n, m in models.items():
            train_times[n].append(timed(lambda: train_step(m, x, y, optimizers[n]), device))  # noqa: B023

    for n, m in models.items():  # noqa: B007
        m.eval()
        if hasattr(m, 'fuse'):
            perturb_coefficients(m)
            m.fuse()
    infer_times = {n: [] for n in names}
    with torch.inference_mode():
        for m in models.values():
            m(x)
        for _ in range(args.rounds):
            for n, m in models.items():
                infer_times[n].append(timed(lambda: m(x), device))  # noqa: B023

    median = {
        k: {n: statistics.median(v) for n, v in times.items()}
        for k, times in (('train', train_times), ('infer', infer_times))
    }
    rows = []
    for ours, base in PAIRS:
        rows.append(
            dict(
                model=ours,
                baseline=base,
                train_step_ratio=median['train'][ours] / median['train'][base],
                activation_memory_ratio=memory[ours] / memory[base],
                fused_inference_ratio=median['infer'][ours] / median['infer'][base],
                train_step_s=median['train'][ours],
                baseline_train_step_s=median['train'][base],
                activation_memory_bytes=memory[ours],
                baseline_activation_memory_bytes=memory[base],
                inference_s=median['infer'][ours],
                baseline_inference_s=median['infer'][base],
            )
        )
    print(
        f'device {device} ({platform.processor() or platform.machine()}), batch {args.batch_size}, '
        f'{args.image_size}px, median of {args.rounds} interleaved rounds'
    )
    print(f'{"model":13} {"baseline":12} {"train step":>11} {"act. memory":>11} {"fused inference":>16}')
    for r in rows:
        print(
            f'{r["model"]:13} {r["baseline"]:12} {r["train_step_ratio"]:10.3f}x '
            f'{r["activation_memory_ratio"]:10.3f}x {r["fused_inference_ratio"]:15.3f}x'
        )
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
