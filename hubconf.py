"""torch.hub entry points: every registered optnets model, e.g.

    torch.hub.load('OWNER/optnets', 'agd_net_121', pretrained=True)                 # its default tag
    torch.hub.load('OWNER/optnets', 'hb_net_20_cifar', pretrained=True, pretrained_cfg='fmnist_resnet')

Each entry is ``timm.create_model(name, pretrained=pretrained, **kwargs)``: the same model, weights (verified by
hash) and keyword arguments as timm's; ``pretrained_cfg=TAG`` picks a tag, as ``name.TAG`` does in timm. Each
entry's docstring (``torch.hub.help``) names its tags and their scores; ``torch.hub.list`` names them all."""

import json as _json
from pathlib import Path as _Path

import timm as _timm

import optnets as _optnets

dependencies = ['torch', 'timm', 'safetensors', 'huggingface_hub']

_SCORES = _Path(__file__).with_name('benchmarks') / 'results' / 'fmnist_weights' / 'runs.json'
"""The shipped tags' test accuracy, as benchmarks/fmnist_weights.py measured it through timm."""


def _tags(name: str) -> str:
    """One line per tag: its score where it was measured here, or what its weights are."""
    scores = _json.loads(_SCORES.read_text()) if _SCORES.is_file() else {}
    lines = []
    for full in _timm.list_pretrained(f'{name}.*'):
        tag, cfg = full.split('.', 1)[1], _timm.models.get_pretrained_cfg(full)
        if full in scores:
            about = f'{100 * scores[full]["test_top1"]:.2f}% top-1 on the Fashion-MNIST test set, measured here'
        else:
            about = (cfg.notes or ('',))[0] or 'published weights'
        lines.append(f'    {tag}{" (default)" if not lines else ""}: {about}')
    return '\n'.join(lines) or '    none: pretrained=True has no weights to load'


def _entry(name: str):
    def create(pretrained: bool = False, **kwargs):
        return _timm.create_model(name, pretrained=pretrained, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__doc__ = (
        f'timm.create_model({name!r}, pretrained=pretrained, **kwargs); pretrained_cfg=TAG picks a tag.\n\n'
        f'Tags:\n{_tags(name)}'
    )
    return create


globals().update({name: _entry(name) for name in _timm.list_models(module=list(_optnets.models.FAMILIES))})
