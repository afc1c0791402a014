"""The model families by name, and the family of a registered model name: below the models and the weights,
which both name families (a model card's tag, the zoo table's column)."""

from dataclasses import dataclass

import timm


@dataclass(frozen=True)
class Family:
    """A model family: the built-in rule its members follow, and the architecture its ``special`` initialisation
    is exactly (what ``learn_coeffs=False`` keeps it as: the baseline it is compared with)."""

    rule: str
    special_case: str


FAMILIES = {
    'gd_net': Family('gd', 'plain CNN'),
    'hb_net': Family('heavy_ball', 'ResNet'),
    'agd_net': Family('agd', 'DenseNet'),
    'admm_net': Family('admm', 'merge-and-run'),
    'momentum_net': Family('momentum', 'Momentum ResNet'),
    'lm_net': Family('linear_multistep', 'ResNet'),
}
"""The family modules by name: timm.list_models(module=list(FAMILIES)) lists every optnets model."""


def family_of(name: str) -> str:
    """The family module of a registered model name (a tag after the dot is ignored), from timm's registry."""
    arch = name.split('.')[0]
    family = next((f for f in FAMILIES if arch in timm.list_models(module=f)), None)
    if family is None:
        raise LookupError(f'{name!r} is not an optnets model: `optnets models` lists them')
    return family
