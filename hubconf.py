"""torch.hub entry points: every registered optnets model, e.g.

    torch.hub.load('OWNER/optnets', 'agd_net_121', pretrained=True)

Each entry is ``timm.create_model(name, pretrained=pretrained, **kwargs)``: the same model, weights (verified by
hash) and keyword arguments as timm's. ``torch.hub.list`` names them all."""

import timm as _timm

import optnets as _optnets

dependencies = ['torch', 'timm', 'safetensors', 'huggingface_hub']


def _entry(name: str):
    def create(pretrained: bool = False, **kwargs):
        return _timm.create_model(name, pretrained=pretrained, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__doc__ = f'timm.create_model({name!r}, pretrained=pretrained, **kwargs)'
    return create


globals().update({name: _entry(name) for name in _timm.list_models(module=list(_optnets.models.FAMILIES))})
