"""timm's builder for the families: the pretrained cfgs, the hash check of published weights before timm loads
them, and one-channel weights widened to the channels a model asks for."""

from typing import Callable

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg
from torch import nn

from ..constants import CIFAR_MEAN, CIFAR_STD
from ..weights.registry import verified_overlay


def cfg(url: str = '', **kwargs) -> dict:
    """An ImageNet pretrained cfg (timm's fields); CIFAR presets override input size, pool size and stats."""
    return {
        'url': url,
        'num_classes': 1000,
        'input_size': (3, 224, 224),
        'pool_size': (7, 7),
        'crop_pct': 0.875,
        'interpolation': 'bilinear',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv',
        'classifier': 'fc',
        'license': 'apache-2.0',
        **kwargs,
    }


def cifar_cfg(**kwargs) -> dict:
    return cfg(
        num_classes=10, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0, mean=CIFAR_MEAN, std=CIFAR_STD, **kwargs
    )


def build(
    model_cls: type[nn.Module],
    variant: str,
    pretrained: bool,
    filter_fn: Callable[[dict, nn.Module], dict] | None = None,
    **kwargs,
) -> nn.Module:
    """timm's builder with the family's checkpoint filter; ``features_only`` taps the stem and every stage.
    Published weights are resolved and verified against the manifest before timm loads them."""
    loaded = lambda: None  # noqa: E731
    if pretrained:
        kwargs['pretrained_cfg_overlay'], loaded = verified_overlay(
            variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay')
        )
    kwargs['pretrained_cfg_overlay'] = _widened_grayscale(variant, kwargs.get('in_chans'), kwargs)
    out_indices = tuple(range(len(kwargs['steps']) + 1))
    model = build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        pretrained_filter_fn=_widening(filter_fn),
        feature_cfg=dict(feature_cls='getter', out_indices=out_indices),
        **kwargs,
    )
    loaded()  # the file loaded into the model: its hash may be pinned now
    return model


def _widened_grayscale(variant: str, in_chans: int | None, kwargs: dict) -> dict | None:
    """The overlay for ``in_chans`` channels from a one-channel tag: its input size and its mean and std
    repeated per channel, so that timm's data config feeds the grey image on every channel (as timm's
    ``validate.py``, which asks for 3 channels unless told, does with ``input_img_mode='RGB'``), and describes the
    model's input with or without weights (timm's ``benchmark.py`` builds every model with 3 channels)."""
    from timm.models import resolve_pretrained_cfg

    overlay = kwargs.get('pretrained_cfg_overlay')
    cfg = {**resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get('pretrained_cfg')).to_dict(), **(overlay or {})}
    channels, *size = cfg['input_size']
    if channels != 1 or in_chans in (None, 1):
        return overlay
    return {
        **(overlay or {}),
        'input_size': (in_chans, *size),
        'test_input_size': None,
        'mean': tuple(cfg['mean']) * in_chans,
        'std': tuple(cfg['std']) * in_chans,
    }


def _widening(filter_fn):
    """``filter_fn``, then a one-channel stem repeated over the model's channels and divided by their number:
    the same output on an image whose channels are equal, as timm's ``adapt_input_conv`` does for 3 channels."""

    def filtered(state_dict: dict, model: nn.Module) -> dict:
        state_dict = filter_fn(state_dict, model) if filter_fn else state_dict
        key = f'{model.pretrained_cfg["first_conv"]}.weight'
        weight, channels = state_dict.get(key), model.in_chans
        if weight is not None and weight.shape[1] == 1 and channels > 1:
            state_dict[key] = weight.repeat(1, channels, 1, 1) / channels
        return state_dict

    return filtered
