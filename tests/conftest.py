"""Under pytest-xdist (setup.cfg runs the suite on every core), each worker computes on one thread: the workers
are the parallelism, and two workers of two threads each on two cores would only take turns. The processes a
test starts inherit the setting."""

import os

if os.environ.get('PYTEST_XDIST_WORKER'):
    import torch

    torch.set_num_threads(1)
    os.environ['OMP_NUM_THREADS'] = '1'  # and the processes a test starts
