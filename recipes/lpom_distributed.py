"""Layer-parallel LPOM on Fashion-MNIST, under torchrun (``optnets.lpom.distributed`` is the solver)::

torchrun --nproc_per_node 2 -m optnets.recipes.lpom_distributed --train 10000 --epochs 3 --hidden 300
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from optnets.lpom import LPOM
from optnets.lpom.distributed import LayerParallelLPOM
from optnets.lpom.estimator import DEFAULT_MU

from .data import FashionMNISTDataModule, fashion_mnist_flat


def main(argv: list[str] | None = None) -> None:
    """Train LPOM layer-parallel on Fashion-MNIST under torchrun; rank 0 reports and saves the weights."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--train', type=int, default=10000, help='first N training images')
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--hidden', type=int, nargs='+', default=[300])
    parser.add_argument('--mu', type=float, default=DEFAULT_MU)
    parser.add_argument('--staleness', type=int, default=0, help='half-sweeps a boundary may lag; -1: unbounded')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, help='a .pt file for the fitted weights, and a .json beside it')
    args = parser.parse_args(argv)
    dist.init_process_group('gloo')
    torch.set_num_threads(1)
    if dist.get_rank() == 0:
        FashionMNISTDataModule().prepare_data()
    dist.barrier()
    (x, y), (xt, yt) = (
        tuple(t.numpy() for t in fashion_mnist_flat(train, slice(0, n)))
        for train, n in ((True, args.train), (False, None))
    )
    estimator = LPOM(tuple(args.hidden), mu=args.mu, random_state=args.seed, max_iter=args.epochs)
    start = time.perf_counter()
    staleness = None if args.staleness < 0 else args.staleness
    LayerParallelLPOM(estimator, staleness).fit(x, y)
    seconds = time.perf_counter() - start
    if dist.get_rank() == 0:
        report = dict(
            processes=dist.get_world_size(),
            staleness=staleness,
            train=args.train,
            epochs=args.epochs,
            hidden=args.hidden,
            test_accuracy=estimator.score(xt, yt),
            seconds_per_epoch=seconds / args.epochs,
        )
        print(json.dumps(report), flush=True)
        if args.out:
            torch.save([w.clone() for w in estimator.weights_], args.out)
            args.out.with_suffix('.json').write_text(json.dumps(report, indent=1) + '\n')
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
