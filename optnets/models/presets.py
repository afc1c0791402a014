"""The papers' skeletons in their own terms, the one place where a rule's step count is derived from them.

A residual stage is compiled as its first block (the transition, which changes width and resolution) followed by
``blocks - 1`` steps of the rule, so ResNet-34's ``layers=(3, 4, 6, 3)`` (timm's ``resnet34``) is
``steps=(2, 3, 5, 2)``. A dense stage is DenseNet's dense block: every layer is a step, and the transition sits
between blocks (the dense presets leave ``block``: it is the rule's kind).
"""

from typing import Sequence

RESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
DENSENET_LAYERS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}
BOTTLENECK_FROM = 50  # ResNet-50 and deeper use bottleneck blocks


def steps_of(layers: Sequence[int]) -> tuple[int, ...]:
    """Blocks per stage -> the rule's steps after each stage's transition."""
    return tuple(blocks - 1 for blocks in layers)


def resnet(depth: int) -> dict:
    """ResNet-``depth`` for ImageNet (He et al. 2016, Table 1)."""
    if depth not in RESNET_LAYERS:
        raise ValueError(f'ImageNet ResNet depths: {sorted(RESNET_LAYERS)}, got {depth}')
    bottleneck = dict(block='bottleneck', widths=(256, 512, 1024, 2048)) if depth >= BOTTLENECK_FROM else {}
    return dict(steps=steps_of(RESNET_LAYERS[depth]), **bottleneck)


def cifar_resnet(depth: int) -> dict:
    """The CIFAR ResNet of depth 6n+2 (He et al. 2016, Sec. 4.2): 3 stages of n blocks, widths 16/32/64."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f'a residual CIFAR network has depth 6n+2 (20, 56, 110, ...), got {depth}')
    n = (depth - 2) // 6
    return dict(steps=steps_of((n,) * 3), widths=(16, 32, 64), stem='cifar', stem_width=16)


def densenet(depth: int) -> dict:
    """DenseNet-BC-``depth`` for ImageNet (Huang et al. 2017, Table 1): layers per dense block."""
    if depth not in DENSENET_LAYERS:
        raise ValueError(f'ImageNet DenseNet depths: {sorted(DENSENET_LAYERS)}, got {depth}')
    return dict(steps=DENSENET_LAYERS[depth])


def cifar_densenet(depth: int) -> dict:
    """The CIFAR DenseNet of depth L = 3n+4, growth 12, without bottleneck or compression: n layers a block."""
    if depth < 7 or (depth - 4) % 3:
        raise ValueError(f'a dense CIFAR network has depth 3n+4 (40, 52, ...), got {depth}')
    return dict(
        steps=((depth - 4) // 3,) * 3, growth_rate=12, bn_size=None, compression=1.0, stem='cifar', stem_width=16
    )


SKELETONS = {  # (preset, dense) -> the skeleton of that depth
    ('cifar', False): cifar_resnet,
    ('imagenet', False): resnet,
    ('cifar', True): cifar_densenet,
    ('imagenet', True): densenet,
}


def skeleton(preset: str, depth: int, dense: bool = False) -> dict:
    """The model arguments of ``preset``'s skeleton at ``depth``: ResNet's, or DenseNet's for a dense rule."""
    if (preset, dense) not in SKELETONS:
        raise ValueError(f"preset must be 'cifar' or 'imagenet', got {preset!r}")
    return SKELETONS[preset, dense](depth)
