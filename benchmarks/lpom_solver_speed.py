"""Per-epoch time of the LPOM MLP on Fashion-MNIST, this checkout against another one (the solver before a change),
measured in one run: the two alternate, each epoch in a fresh process with one thread, and the ratio is of medians.

    git worktree add /tmp/before <commit>
    python benchmarks/lpom_solver_speed.py --against /tmp/before --out benchmarks/results/lpom_solver_speed

Both checkouts fit the same images with the same settings and seed; each also reports a digest of the fitted weights,
so the table says whether the two solvers computed the same network, bit for bit.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHS = {'784-300-10': (300,), '784-1000-500-250-10': (1000, 500, 250)}
EPOCH = """
import hashlib, json, sys, time, torch
from optnets.lpom import LPOM
from optnets.recipes.data import fashion_mnist_flat
torch.set_num_threads(1)
x, y = fashion_mnist_flat(True, slice(0, int(sys.argv[2])))
model = LPOM(tuple(json.loads(sys.argv[1])), mu=10.0, random_state=0, max_iter=1)
start = time.perf_counter()
model.fit(x.numpy(), y.numpy())
seconds = time.perf_counter() - start
digest = hashlib.sha256(b''.join(w.numpy().tobytes() for w in model.weights_)).hexdigest()[:16]
print(json.dumps(dict(seconds=seconds, digest=digest)))
"""


def epoch(checkout: Path, hidden: tuple, images: int) -> dict:
    """One epoch in a fresh process that imports optnets from ``checkout``."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(checkout)}
    done = subprocess.run(
        [sys.executable, '-c', EPOCH, json.dumps(hidden), str(images)],
        capture_output=True,
        text=True,
        env=env,
        cwd=checkout,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--against', type=Path, required=True, help='the other checkout (e.g. a git worktree)')
    parser.add_argument('--images', type=int, default=10000)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)
    rows = []
    for arch, hidden in ARCHS.items():
        runs = {'this': [], 'against': []}
        for _ in range(args.repeats):  # alternating, so that a change of load hits both
            for name, checkout in (('against', args.against), ('this', ROOT)):
                runs[name].append(epoch(checkout, hidden, args.images))
        medians = {name: statistics.median(r['seconds'] for r in rs) for name, rs in runs.items()}
        same = {r['digest'] for rs in runs.values() for r in rs}
        rows.append(
            dict(
                arch=arch,
                **{f'{k}_seconds': v for k, v in medians.items()},
                ratio=medians['this'] / medians['against'],
                same_weights=len(same) == 1,
                runs=runs,
            )
        )
        print(
            f'{arch}: {medians["this"]:.2f} s against {medians["against"]:.2f} s, '
            f'ratio {rows[-1]["ratio"]:.3f}, same weights: {rows[-1]["same_weights"]}',
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'results.json').write_text(
        json.dumps(dict(images=args.images, repeats=args.repeats, rows=rows), indent=1)
    )
    lines = [
        '| MLP | this solver (s/epoch) | the one before (s/epoch) | ratio | same weights |',
        '|---|---|---|---|---|',
    ]
    lines += [
        f'| {r["arch"]} | {r["this_seconds"]:.2f} | {r["against_seconds"]:.2f} | {r["ratio"]:.3f} | '
        f'{"yes" if r["same_weights"] else "no"} |'
        for r in rows
    ]
    (args.out / 'table.md').write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
