"""One training step of optnets' ISTA-Net+ against deepinv's unfolded PGD with the same prox (the same network but
for how the step is parametrised), as recon_cs.py trains them: 25% compressed sensing, 5 phases, batch 64, Adam.
The steps alternate between the two models and each is timed in CPU seconds of this process (``process_time``), so
that other work on the machine slows neither more than the other; the median over ``--rounds`` after two warm-up
rounds, and the ratio to deepinv's.

    OMP_NUM_THREADS=1 python -m benchmarks.recon_step_time --out benchmarks/results/recon_step_time   # ~2 min
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from .recon_cs import LR, images, learned, physics_of, train_step

MODELS = ('ista_net_plus', 'deepinv_unfolded_pgd')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=12)
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    physics = physics_of('compressed_sensing', 0.25)
    x = images(True, slice(0, 64))
    models = {name: learned(name, 5, physics) for name in MODELS}
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=LR) for name, model in models.items()}
    seconds = {name: [] for name in MODELS}
    for _ in range(args.rounds + 2):
        for name, model in models.items():
            y = physics(x)
            start = time.process_time()
            train_step(model, optimizers[name], y, physics, x)
            seconds[name].append(time.process_time() - start)
    median = {name: statistics.median(times[2:]) for name, times in seconds.items()}
    result = dict(
        cpu_seconds_per_step=median,
        ratio_to_deepinv=median['ista_net_plus'] / median['deepinv_unfolded_pgd'],
        rounds=args.rounds,
        threads=torch.get_num_threads(),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'results.json').write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
