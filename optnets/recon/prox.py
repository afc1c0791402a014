"""Learned proximal maps: soft-thresholding in a learned transform domain (ISTA-Net and ISTA-Net+, Zhang and
Ghanem, CVPR 2018), each with the symmetry constraint's residual ``F~(F(x)) - x`` that their loss penalises."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftThreshold(nn.Module):
    """``sign(x) max(|x| - theta, 0)``: the proximal map of ``theta ||x||_1``, ``theta`` learned (positive)."""

    def __init__(self, theta: float = 0.01):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x) * F.relu(x.abs() - self.theta.abs())


class RecordsSymmetry(nn.Module):
    """A prox that records, in training, its symmetry residual of the last forward (``symmetry``), which
    ``symmetry_loss`` reads once; copies and pickles leave it out (it holds the forward's graph)."""

    symmetry: torch.Tensor | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, 'symmetry': None}


def _two_convs(channels_in: int, features: int, channels_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, features, kernel, padding=kernel // 2, bias=False),
        nn.ReLU(),
        nn.Conv2d(features, channels_out, kernel, padding=kernel // 2, bias=False),
    )


class ISTANetProx(RecordsSymmetry):
    """ISTA-Net's ``x = F~(soft(F(r), theta))``, ``F`` and ``F~`` two convolutions with a ReLU between;
    ``symmetry`` holds the last forward's ``F~(F(r)) - r``."""

    def __init__(self, channels: int = 1, features: int = 32, kernel: int = 3, theta: float = 0.01):
        super().__init__()
        self.forward_transform = _two_convs(channels, features, features, kernel)
        self.threshold = SoftThreshold(theta)
        self.backward_transform = _two_convs(features, features, channels, kernel)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        code = self.forward_transform(r)
        if self.training:
            self.symmetry = self.backward_transform(code) - r
        return self.backward_transform(self.threshold(code))


class ISTANetPlusProx(RecordsSymmetry):
    """ISTA-Net+'s residual form ``x = r + H(F~(soft(F(D r), theta)))``: ``D`` lifts to ``features`` channels,
    ``H`` maps back; ``symmetry`` holds ``F~(F(D r)) - D r``."""

    def __init__(self, channels: int = 1, features: int = 32, kernel: int = 3, theta: float = 0.01):
        super().__init__()
        self.lift = nn.Conv2d(channels, features, kernel, padding=kernel // 2, bias=False)
        self.forward_transform = _two_convs(features, features, features, kernel)
        self.threshold = SoftThreshold(theta)
        self.backward_transform = _two_convs(features, features, features, kernel)
        self.project = nn.Conv2d(features, channels, kernel, padding=kernel // 2, bias=False)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        lifted = self.lift(r)
        code = self.forward_transform(lifted)
        if self.training:
            self.symmetry = self.backward_transform(code) - lifted
        return r + self.project(self.backward_transform(self.threshold(code)))


def symmetry_loss(model: nn.Module) -> torch.Tensor:
    """The mean over phases of ``||F~(F(x)) - x||^2`` / its size: the constraint term of ISTA-Net's loss, from the
    residuals the proxes of ``model`` recorded in its last training forward (read once; 0 when there are none)."""
    residuals = []
    for module in model.modules():
        if isinstance(module, RecordsSymmetry) and module.symmetry is not None:
            residuals.append(module.symmetry.pow(2).mean())
            module.symmetry = None
    return torch.stack(residuals).mean() if residuals else torch.zeros(())
