"""What the model tables say of a model: sizes, GMACs (torch's FLOP counter, on the meta device) and tags."""

from typing import Sequence

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..compiler import CompiledStage


def gmacs(model: nn.Module, input_size: Sequence[int]) -> float:
    """Multiply-adds of ``model`` on one image of ``input_size`` (C, H, W), in billions: torch's FLOP counter,
    halved, on the model's own device (``meta`` counts without allocating)."""
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *input_size, device=next(model.parameters()).device))
    return counter.get_total_flops() / 2e9


def facts(name: str) -> dict:
    """What the model tables say of a registered name: sizes (built on the meta device: nothing is allocated),
    GMACs at its input size by torch's FLOP counter, its stages and its published tags."""
    model = timm.create_model(name, device='meta')
    size = tuple(model.pretrained_cfg['input_size'])
    stages = [m for m in model.modules() if isinstance(m, CompiledStage)]
    arch = name.split('.')[0]
    return dict(
        model=model,
        input_size=size,
        gmacs=gmacs(model, size),
        stages=stages,
        params=sum(p.numel() for p in model.parameters()),
        coefficients=sum(p.numel() for _, p in model.named_coefficients()),
        tags=[t.split('.', 1)[1] for t in timm.list_pretrained(f'{arch}.*')],
    )
