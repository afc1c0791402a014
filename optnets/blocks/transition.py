"""Stage transitions: where width or resolution changes, before a compiled stage's steps."""

from __future__ import annotations

import torch
from timm.layers import BatchNormAct2d
from torch import nn

from .residual import conv_bn


class ResidualTransition(nn.Module):
    """``act(T(x) + shortcut(x))``: the first block of a ResNet stage (timm's ``downsample.0/1`` names).

    With ``shortcut=False`` it is the plain step ``act(T(x))`` of a VGG-style network.
    """

    def __init__(
        self,
        transform: nn.Module,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        shortcut: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.transform = transform
        self.shortcut = shortcut
        if shortcut and (stride != 1 or in_chs != out_chs):
            self.downsample = nn.Sequential(*conv_bn(in_chs, out_chs, 1, stride, dict(device=device, dtype=dtype)))
        else:
            self.downsample = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.transform(x)
        if self.shortcut:
            out = out + self.downsample(x)
        return self.act(out)


class DenseTransition(nn.Sequential):
    """BN-ReLU-conv1x1-avgpool between dense stages (timm's ``norm``, ``conv``, ``pool``)."""

    def __init__(
        self, in_chs: int, out_chs: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ):
        super().__init__()
        self.norm = BatchNormAct2d(in_chs, device=device, dtype=dtype)
        self.conv = nn.Conv2d(in_chs, out_chs, 1, bias=False, device=device, dtype=dtype)
        self.pool = nn.AvgPool2d(2, 2)
