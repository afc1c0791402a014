"""Shared test helpers."""

import os
import time

import lightning as L
import torch
from torch import nn


def randomise_norms(module: nn.Module, shift: float = 0.5) -> nn.Module:
    """Random BN statistics and affine parameters (eval mode), so that equivalences are not trivially true."""
    torch.manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-shift, shift)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -shift, shift)
    return module.eval()


class WaitAt(L.Callback):
    """For tests that interrupt real runs: at ``step`` write ``ready`` (holding the process id) and wait to be
    signalled (SIGTERM hands control back to Lightning, which stops; SIGKILL ends the process)."""

    def __init__(self, step: int, ready: str, timeout: float = 120.0):
        self.step, self.ready, self.timeout = step, ready, timeout

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step != self.step:
            return
        with open(self.ready, 'w') as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.02)
