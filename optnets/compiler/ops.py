"""Tensor operations that generated forwards call, where eager mode and a compiler want different forms."""

from __future__ import annotations

import torch


def weighted_iterates(row: torch.Tensor, history: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``sum_j row[j] * x[j]`` where ``history`` concatenates the k iterates ``x[j]`` (each shaped as ``like``) on
    dim 1 and ``row`` holds their k coefficients.

    Eager takes one batched product of the row with each sample's k iterates: one read of the history. A compiler
    takes the broadcast reduction instead, the same sum: inductor lowers it itself and fuses the concatenation into
    it, where the product on a CPU is an external call that makes the concatenation a copy of its own every step
    (``benchmarks/vs_timm.py --compile``)."""
    n, k = history.shape[0], row.shape[0]
    if torch.compiler.is_compiling():
        shape = [n, k] + list(like.shape[1:])
        return (row.view([1, k] + [1] * (like.dim() - 1)) * history.reshape(shape)).sum(1)
    return torch.bmm(row.expand(n, 1, k), history.reshape(n, k, -1)).view_as(like)
