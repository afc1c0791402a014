"""What a compiled stage asks of its transforms T, beyond ``forward``: the contract between stages and blocks.

A transform may offer each of these; a stage uses what its transform offers and does without the rest (an ``nn.Module``
of the user's own runs unfused, and starts as initialised)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ScalesOutput(Protocol):
    """A T whose output ends in a norm: ``fuse()`` folds a coefficient on ``T(...)`` into it, and a stage whose
    identity path carries its input starts T at zero (timm's ``zero_init_last``)."""

    def scale_output_(self, scale: torch.Tensor) -> None:
        """Multiply the output by ``scale`` (a number or one per channel), in place."""

    def zero_init_last(self) -> None:
        """Make the output zero at initialisation."""


@runtime_checkable
class ScalesInputs(Protocol):
    """A dense layer over the concatenated history: ``fuse()`` folds ``a[j]`` into its weight slice for ``x[j]``."""

    def scale_inputs_(self, scales: torch.Tensor) -> None:
        """Multiply the input slice of history entry ``j`` by ``scales[j]``, in place."""
