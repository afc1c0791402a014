"""Shared test helpers."""
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
