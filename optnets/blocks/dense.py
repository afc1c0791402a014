"""The dense-layer transform: per-channel head (BN-ReLU) then a linear conv, fused over a history of inputs."""

from __future__ import annotations

import itertools
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d
from torch import nn


class DenseLayer(nn.Module):
    """``sum_j a[j] * T(x[j])`` as ``tail(conv1(concat_j(a[j] * P(x[j]))))``, P = BN-ReLU (per channel).

    BN over the concatenation is BN of each slice, and scaling slice j of conv1's input is scaling its weight
    slice, so the coefficients cost one small multiply on the weight: the layer costs what DenseNet's costs.
    ``bn_size`` adds DenseNet-BC's bottleneck (conv1 1x1 -> BN-ReLU -> conv2 3x3); without it conv1 is the 3x3.
    Parameter names are timm's ``DenseLayer``'s.
    """

    def __init__(
        self,
        in_widths: Sequence[int],
        growth: int,
        bn_size: int | None = 4,
        drop_rate: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        in_chs = sum(in_widths)
        self.norm1 = BatchNormAct2d(in_chs, **dd)
        if bn_size:
            self.conv1 = nn.Conv2d(in_chs, bn_size * growth, 1, bias=False, **dd)
            self.norm2 = BatchNormAct2d(bn_size * growth, **dd)
            self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False, **dd)
        else:
            self.conv1 = nn.Conv2d(in_chs, growth, 3, padding=1, bias=False, **dd)
        self.drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.in_widths = tuple(in_widths)
        # (first input, inputs, width) of each run of inputs of one width: a dense stage's input, then its steps
        self.runs: list[tuple[int, int, int]] = []
        first = 0
        for width, run in itertools.groupby(self.in_widths):
            n = len(list(run))
            self.runs.append((first, n, width))
            first += n

    def _channel_scale(self, scales: torch.Tensor) -> torch.Tensor:
        """Input j's coefficient on each of its channels, broadcast over each run of equal widths: every exporter
        takes it, and its backward is a sum over each block. A gather's is a scatter-add: atomic adds onto a few
        coefficients, which with the gather were the largest kernels of the compiled train step that DenseNet's
        has not (``benchmarks/profile_vs.py --compile``)."""
        parts = []
        for first, n, width in self.runs:
            parts.append(scales[first : first + n, None].expand(n, width).reshape(-1))
        return torch.cat(parts)

    def forward(self, history: torch.Tensor, scales: Optional[torch.Tensor]) -> torch.Tensor:
        """``history`` is the concatenation of the inputs x[0..k]; ``scales`` their coefficients (None: ones).

        Eager scales conv1's weight, a pass over a small tensor. A compiler scales conv1's input instead, the same
        product: inductor fuses it into BN-ReLU's kernels and its gradient into BN's backward, where the weight's
        scale was kernels of its own, forward and backward (``benchmarks/profile_vs.py --compile``)."""
        x = self.norm1(history)
        weight = self.conv1.weight
        if scales is not None:
            scale = self._channel_scale(scales.to(weight.dtype)).view(1, -1, 1, 1)
            if torch.compiler.is_compiling():
                x = x * scale
            else:
                weight = weight * scale
        return self.tail(F.conv2d(x, weight, None, 1, self.conv1.padding))

    def tail(self, x: torch.Tensor) -> torch.Tensor:
        """What follows the fused conv: DenseNet-BC's BN-ReLU-conv3x3 (if any), then dropout."""
        if hasattr(self, 'conv2'):
            x = self.conv2(self.norm2(x))
        return self.drop(x)

    @torch.jit.unused
    def head(self, x: torch.Tensor, j: int) -> torch.Tensor:
        """The meaning of one summand: conv1's weight slice ``j`` on ``P(x)`` with P the BN-ReLU of slice ``j``'s
        channels, so that ``forward(cat(xs), a) == tail(sum_j a[j] * head(xs[j], j))``."""
        start = sum(self.in_widths[:j])
        part = slice(start, start + self.in_widths[j])
        norm = self.norm1
        use_batch = norm.training or norm.running_mean is None
        mean, var = (None, None) if use_batch else (norm.running_mean[part], norm.running_var[part])
        x = F.batch_norm(x, mean, var, norm.weight[part], norm.bias[part], use_batch, 0.0, norm.eps)
        return F.conv2d(norm.act(norm.drop(x)), self.conv1.weight[:, part], None, 1, self.conv1.padding)

    @torch.no_grad()
    def scale_inputs_(self, scales: torch.Tensor) -> None:
        """Fold the coefficients into conv1's weight slices (inference)."""
        self.conv1.weight.mul_(self._channel_scale(scales.to(self.conv1.weight)).view(1, -1, 1, 1))
