"""Layer-parallel LPOM on 2 gloo processes launched by torchrun: the synchronous mode equals the odd-even schedule
in one process bit for bit; the asynchronous one runs to the end."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from optnets.lpom import LPOM
from optnets.lpom.distributed import LayerParallelLPOM, owned_layers
from optnets.recipes.data import fashion_mnist_flat


def test_owned_layers_split_contiguously_and_cover_every_layer():
    for layers in range(1, 7):
        for world in range(1, layers + 1):
            parts = [owned_layers(layers, world, rank) for rank in range(world)]
            assert [i for part in parts for i in part] == list(range(layers))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match='2 layers cannot be split over 3'):
        owned_layers(2, 3, 0)
    with pytest.raises(ValueError, match='staleness'):
        LayerParallelLPOM(LPOM(), staleness=-1)


def torchrun(tmp_path, *args):
    out = tmp_path / 'weights.pt'
    subprocess.run(
        [
            sys.executable,
            '-m',
            'torch.distributed.run',
            '--standalone',
            '--nproc_per_node',
            '2',
            '-m',
            'optnets.recipes.lpom_distributed',
            '--train',
            '300',
            '--epochs',
            '1',
            '--hidden',
            '32',
            '16',
            '--out',
            str(out),
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, 'OMP_NUM_THREADS': '1'},
    )
    return torch.load(out)


def test_two_processes_equal_the_odd_even_schedule_bit_for_bit(tmp_path):
    x, y = (t.numpy() for t in fashion_mnist_flat(True, slice(0, 300)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the processes: a matrix product's rounding may depend on the threads
    try:
        reference = LPOM((32, 16), random_state=0, max_iter=1, schedule='odd-even').fit(x, y)
    finally:
        torch.set_num_threads(threads)
    weights = torchrun(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(weights, reference.weights_))
    serial = LPOM((32, 16), random_state=0, max_iter=1).fit(x, y)
    assert not all(torch.equal(a, b) for a, b in zip(serial.weights_, reference.weights_))  # another schedule


def test_asynchronous_processes_run_to_the_end(tmp_path):
    weights = torchrun(tmp_path, '--staleness', '-1')  # rank 0's copy, after the last broadcast
    assert [w.shape for w in weights] == [(32, 785), (16, 33), (10, 17)]
    assert all(np.isfinite(w.numpy()).all() for w in weights)
