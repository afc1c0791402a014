"""``register``: a timm model from any update rule, on the CIFAR or ImageNet skeleton of a given depth."""

from typing import Callable

from timm.models import generate_default_cfgs, register_model
from torch import nn

from ..compiler import compile_rule
from ..rules import Rule
from . import agd_net, hb_net
from .builder import build, cfg, cifar_cfg
from .network import OptNet
from .presets import skeleton

__all__ = ['register', 'rule_model']

default_cfgs = {}


def checkpoint_filter_fn(state_dict: dict, model: OptNet) -> dict:
    """ResNet checkpoints for residual rules, DenseNet checkpoints for dense ones."""
    state_dict = hb_net.checkpoint_filter_fn(state_dict, model)
    return agd_net.checkpoint_filter_fn(state_dict, model)


def register(
    name: str,
    rule: Rule | str,
    preset: str = 'cifar',
    depth: int = 56,
    special: dict | None = None,
    theory: dict | None = None,
    inits: dict | None = None,
    shortcut: bool = True,
    **model_kwargs,
) -> Callable[..., nn.Module]:
    """Register ``name`` with timm as ``rule`` compiled on a preset skeleton; returns the entrypoint.

    Rules that sum transforms over the history get DenseNet's skeleton, the others ResNet's (a ResNet block as
    each stage's transition, then the rule's steps). ``model_kwargs`` become defaults of the model, e.g.
    ``coeff_init='theory'``; ``timm.create_model(name, ...)`` takes the usual overrides. ``special`` and
    ``theory`` give the coefficients' initial values (``{symbol: value}``); unnamed ones start at 0. ``inits``
    adds initialisations of your own, ``{name: {symbol: value}}``, selected by ``coeff_init=name``.

    ``shortcut``: on ResNet's skeleton, whether each stage's first block (the transition, where width or
    resolution changes) keeps ResNet's shortcut. ``shortcut=False`` with ``x[k+1] = T(x[k])`` is ``gd_net``'s
    plain CNN, with no skip anywhere; with the default, the three transitions keep theirs. DenseNet's skeleton
    has no shortcuts to keep.
    """
    rule, defaults = _on_skeleton(name, rule, preset, depth, special, theory, inits, shortcut)
    defaults.update(model_kwargs)
    default_cfgs.update(generate_default_cfgs({name: _cfg(preset)}))

    def entrypoint(pretrained=False, **kwargs):
        return build(OptNet.for_rule(rule), name, pretrained, checkpoint_filter_fn, **{**defaults, **kwargs})

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f'{name}: rule {str(rule)!r} on the {preset} skeleton of depth {depth}.'
    return register_model(entrypoint)  # timm reads the entry's pretrained cfg from this module's default_cfgs


def rule_model(
    name: str,
    rule: Rule | str,
    preset: str = 'cifar',
    depth: int = 56,
    special: dict | None = None,
    theory: dict | None = None,
    inits: dict | None = None,
    shortcut: bool = True,
    **kwargs,
) -> nn.Module:
    """The model ``register(name, rule, ...)`` would make, with nothing registered: timm's builder and model API,
    no global entry (a search trial builds its network this way). ``kwargs`` are ``timm.create_model``'s."""
    rule, defaults = _on_skeleton(name, rule, preset, depth, special, theory, inits, shortcut)
    return build(
        OptNet.for_rule(rule), name, False, checkpoint_filter_fn, pretrained_cfg=_cfg(preset), **{**defaults, **kwargs}
    )


def _on_skeleton(
    name: str, rule: Rule | str, preset: str, depth: int, special, theory, inits, shortcut: bool
) -> tuple[Rule, dict]:
    """The rule with its initialisations, and the model arguments of its skeleton."""
    rule = Rule.parse(rule, name=name) if isinstance(rule, str) else rule
    named = {key: value for key, value in (('special', special), ('theory', theory)) if value is not None}
    rule = rule.with_inits(**named, **(inits or {}))
    plan = compile_rule(rule)
    if plan.dense and not shortcut:
        raise ValueError(f"{name}: a dense rule gets DenseNet's skeleton, which has no shortcut to leave out")
    arguments = skeleton(preset, depth, plan.dense) | ({} if plan.dense else {'shortcut': shortcut})
    return rule, dict(arguments, rule=rule)


def _cfg(preset: str) -> dict:
    return cifar_cfg() if preset == 'cifar' else cfg()
