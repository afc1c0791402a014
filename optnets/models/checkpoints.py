"""Checkpoint key maps: timm's and torchvision's ResNet and DenseNet state dicts onto the skeletons."""

import re
from typing import Sequence, Tuple

from torch import nn


RESNET_KEYS = [
    (r'^conv1\.', 'stem.conv.'),
    (r'^bn1\.', 'stem.bn.'),
    (r'^layer(\d+)\.0\.downsample\.', lambda m: f'stages.{int(m[1]) - 1}.transition.downsample.'),
    (r'^layer(\d+)\.0\.', lambda m: f'stages.{int(m[1]) - 1}.transition.transform.'),
    (r'^layer(\d+)\.(\d+)\.', lambda m: f'stages.{int(m[1]) - 1}.T_x.{int(m[2]) - 1}.'),
]


def resnet_checkpoint_filter(state_dict: dict, model: nn.Module) -> dict:
    """A timm/torchvision ResNet state dict (or one under a checkpoint's ``state_dict``) mapped onto the ResNet
    skeleton with one stream ``x``, the key map every residual family shares. A state without coefficients (a
    ResNet's, or a model's trained with ``learn_coeffs=False``) keeps the model's initial ones."""
    state_dict = state_dict.get('state_dict', state_dict)
    if 'layer1.0.conv1.weight' in state_dict:
        state_dict = rename(state_dict, RESNET_KEYS)
    return keep_missing_coefficients(state_dict, model)


def keep_missing_coefficients(state_dict: dict, model: nn.Module) -> dict:
    """A ResNet/DenseNet checkpoint has no coefficients: they keep the model's (special) initial values."""
    for name, value in model.named_coefficients():
        state_dict.setdefault(name, value.detach())
    return state_dict


def rename(state_dict: dict, rules: Sequence[Tuple[str, str]]) -> dict:
    """Rename checkpoint keys by the first matching ``(pattern, replacement)`` (``re.sub`` syntax)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            new, count = re.subn(pattern, replacement, key)
            if count:
                key = new
                break
        out[key] = value
    return out
