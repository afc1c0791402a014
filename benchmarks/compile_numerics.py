"""How far torch.compile's gradients are from float64's, beside eager float32's, per model.

    python benchmarks/compile_numerics.py --models admm_net_56_cifar hb_net_20_cifar --out DIR

For each model, as ``timm.create_model`` makes it: the gradients of a fixed loss on a fixed batch (the same
weights, batch norm in training mode) in float64 eager (the reference), in float32 eager, and in float32 compiled
by inductor; the relative error of a gradient is ``|g - g64| / |g64|`` over all parameters at once.
"""

import argparse
import json
import time
from pathlib import Path

import timm
import torch

import optnets  # noqa: F401  (registers the families)


def gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.flatten().double() for p in model.parameters()])


def measure(name: str, batch: int = 8, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=10).train()  # as a user gets it: its default init
    x, y = torch.randn(batch, 3, 32, 32), torch.arange(batch) % 10
    reference = gradients(model.double(), x.double(), y)
    model.float()
    eager = gradients(model, x, y)
    compiled = torch.compile(model)
    start = time.perf_counter()
    inductor = gradients(compiled, x, y)
    seconds = time.perf_counter() - start
    error = lambda g: float((g - reference).norm() / reference.norm())  # noqa: E731
    return dict(model=name, eager_float32=error(eager), inductor_float32=error(inductor), compile_seconds=seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', required=True)
    parser.add_argument('--out', type=Path)
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        rows.append(measure(name))
        print(json.dumps(rows[-1]), flush=True)
    table = ['| model | eager float32 | inductor float32 | compile (s) |', '|---|---|---|---|']
    table += [
        f'| `{r["model"]}` | {r["eager_float32"]:.1e} | {r["inductor_float32"]:.1e} | {r["compile_seconds"]:.0f} |'
        for r in rows
    ]
    print('\n'.join(table))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / 'results.json').write_text(json.dumps(rows, indent=1) + '\n')
        (args.out / 'table.md').write_text('\n'.join(table) + '\n')


if __name__ == '__main__':
    main()
