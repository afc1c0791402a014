"""Residual-family transforms T: ResNet's basic and bottleneck branches (without the shortcut)."""

from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import nn


def conv_bn(
    in_chs: int, out_chs: int, kernel: int, stride: int = 1, dd: dict | None = None
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    dd = dd or {}
    conv = nn.Conv2d(in_chs, out_chs, kernel, stride=stride, padding=kernel // 2, bias=False, **dd)
    return conv, nn.BatchNorm2d(out_chs, **dd)


class _ScaledOutput(nn.Module):
    """A transform whose last op is a BatchNorm, so a coefficient on its output folds into that norm; in training,
    stochastic depth (``drop_path``) drops the whole output per sample, as in timm's ResNet blocks."""

    last_norm: str

    def __init__(self, drop_path: float = 0.0):
        super().__init__()
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    @torch.no_grad()
    def scale_output_(self, scale: torch.Tensor):
        norm = getattr(self, self.last_norm)
        scale = scale.reshape(-1).to(norm.weight)
        norm.weight.mul_(scale)
        norm.bias.mul_(scale)

    def zero_init_last(self):
        nn.init.zeros_(getattr(self, self.last_norm).weight)


class BasicTransform(_ScaledOutput):
    """conv3x3-BN-ReLU-conv3x3-BN: the branch of ResNet's BasicBlock (timm's parameter names); ``drop_block`` (a
    DropBlock factory, as timm's ``drop_blocks`` gives) after the first BN, where timm's block has it."""

    last_norm = 'bn2'

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        drop_path: float = 0.0,
        drop_block: nn.Module | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(drop_path)
        dd = dict(device=device, dtype=dtype)
        self.conv1, self.bn1 = conv_bn(in_chs, out_chs, 3, stride, dd)
        self.drop_block = drop_block() if drop_block is not None else nn.Identity()
        self.act1 = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(out_chs, out_chs, 3, 1, dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.bn2(self.conv2(self.act1(self.drop_block(self.bn1(self.conv1(x)))))))


class BottleneckTransform(_ScaledOutput):
    """conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN: the branch of ResNet's Bottleneck (timm's names); ``drop_block``
    after the second BN, where timm's block has it."""

    last_norm = 'bn3'
    expansion = 4

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        drop_path: float = 0.0,
        drop_block: nn.Module | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(drop_path)
        dd = dict(device=device, dtype=dtype)
        width = out_chs // self.expansion
        self.conv1, self.bn1 = conv_bn(in_chs, width, 1, 1, dd)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride, dd)
        self.drop_block = drop_block() if drop_block is not None else nn.Identity()
        self.act2 = nn.ReLU(inplace=True)
        self.conv3, self.bn3 = conv_bn(width, out_chs, 1, 1, dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.drop_path(self.bn3(self.conv3(self.act2(self.drop_block(self.bn2(self.conv2(x)))))))
