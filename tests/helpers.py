"""Shared test helpers."""

import os
import time

import lightning as L
import torch
from torch import nn

SMALLEST = {
    'gd_net': 'gd_net_56_cifar',
    'hb_net': 'hb_net_20_cifar',
    'agd_net': 'agd_net_40_cifar',
    'admm_net': 'admm_net_56_cifar',
    'momentum_net': 'momentum_net_20_cifar',
    'lm_net': 'lm_net_20_cifar',
}
"""Each family's smallest registered model."""


def randomise_norms(module: nn.Module, shift: float = 0.5, statistics: bool = True, seed: int | None = 1) -> nn.Module:
    """Random BN scales in [0.5, 1.5] and shifts in [-shift, shift] (each T's last BN is 0 and 0 at timm's init),
    so that equivalences are not trivially true; with ``statistics`` also random running statistics, in eval
    mode. ``seed`` seeds torch's generator first (None: draw from its current state)."""
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                if statistics:
                    m.running_mean.uniform_(-shift, shift)
                    m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-shift, shift)
    return module.eval() if statistics else module


class WaitAt(L.Callback):
    """For tests that interrupt real runs: at ``step`` write ``ready`` (holding the process id) and wait to be
    signalled (SIGTERM hands control back to Lightning, which stops; SIGKILL ends the process). It waits at the
    end of that training batch, or with ``before_validation`` as the validation after it starts (by then the
    checkpoints of that step are written)."""

    def __init__(self, step: int, ready: str, timeout: float = 120.0, before_validation: bool = False):
        self.step, self.ready, self.timeout, self.before_validation = step, ready, timeout, before_validation

    def on_train_batch_end(self, trainer, *args):
        if not self.before_validation:
            self.wait(trainer)

    def on_validation_start(self, trainer, *args):
        if self.before_validation and not trainer.sanity_checking:
            self.wait(trainer)

    def wait(self, trainer):
        if trainer.global_step != self.step:
            return
        with open(self.ready, 'w') as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.02)
