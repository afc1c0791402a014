"""Pretrained weights: export a training checkpoint to safetensors that timm's pretrained path loads."""

from .export import export_checkpoint

__all__ = ['export_checkpoint']
