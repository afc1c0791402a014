"""``register``: a timm model from any update rule, on the CIFAR or ImageNet skeleton of a given depth."""
import sys

from timm.models import generate_default_cfgs, register_model

from ..compiler import compile_rule
from ..rules import Rule
from . import agd_net, hb_net
from .network import OptNet, build, cfg, cifar_cfg, cifar_resnet

__all__ = ['register']

default_cfgs = {}

RESIDUAL_IMAGENET = {
    18: dict(steps=(1, 1, 1, 1)),
    34: dict(steps=(2, 3, 5, 2)),
    50: dict(steps=(2, 3, 5, 2), block='bottleneck', widths=(256, 512, 1024, 2048)),
    101: dict(steps=(2, 3, 22, 2), block='bottleneck', widths=(256, 512, 1024, 2048)),
    152: dict(steps=(2, 7, 35, 2), block='bottleneck', widths=(256, 512, 1024, 2048)),
}
DENSE_IMAGENET = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}


def _preset(plan, preset: str, depth: int) -> dict:
    if preset == 'cifar':
        if plan.dense:
            if depth < 7 or (depth - 4) % 3:
                raise ValueError(f'a dense CIFAR network has depth 3n+4 (40, 52, ...), got {depth}')
            return dict(agd_net._cifar(depth), block='dense')
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f'a residual CIFAR network has depth 6n+2 (20, 56, 110, ...), got {depth}')
        return cifar_resnet((depth - 2) // 6)
    if preset == 'imagenet':
        table = DENSE_IMAGENET if plan.dense else RESIDUAL_IMAGENET
        if depth not in table:
            raise ValueError(f'ImageNet depths for this rule: {sorted(table)}, got {depth}')
        return dict(steps=table[depth], block='dense') if plan.dense else dict(table[depth])
    raise ValueError(f"preset must be 'cifar' or 'imagenet', got {preset!r}")


def checkpoint_filter_fn(state_dict: dict, model: OptNet) -> dict:
    """ResNet checkpoints for residual rules, DenseNet checkpoints for dense ones."""
    state_dict = hb_net.checkpoint_filter_fn(state_dict, model)
    return agd_net.checkpoint_filter_fn(state_dict, model)


def register(name: str, rule: Rule | str, preset: str = 'cifar', depth: int = 56, special: dict | None = None,
             theory: dict | None = None, **model_kwargs):
    """Register ``name`` with timm as ``rule`` compiled on a preset skeleton; returns the entrypoint.

    Rules that sum transforms over the history get DenseNet's skeleton, the others ResNet's (a ResNet block as
    each stage's transition, then the rule's steps). ``model_kwargs`` become defaults of the model, e.g.
    ``coeff_init='theory'``; ``timm.create_model(name, ...)`` takes the usual overrides. ``special`` and
    ``theory`` give the coefficients' initial values (``{symbol: value}``); unnamed ones start at 0.
    """
    rule = Rule.parse(rule, name=name) if isinstance(rule, str) else rule
    inits = {key: value for key, value in (('special', special), ('theory', theory)) if value is not None}
    rule = rule.with_inits(**inits)
    defaults = dict(_preset(compile_rule(rule), preset, depth), rule=rule, **model_kwargs)
    default_cfgs.update(generate_default_cfgs({name: cifar_cfg() if preset == 'cifar' else cfg()}))

    def entrypoint(pretrained=False, **kwargs):
        return build(OptNet, name, pretrained, checkpoint_filter_fn, **{**defaults, **kwargs})

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f'{name}: rule {str(rule)!r} on the {preset} skeleton of depth {depth}.'
    setattr(sys.modules[__name__], name, entrypoint)
    return register_model(entrypoint)
