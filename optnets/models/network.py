"""The network skeleton shared by every family: stem, compiled stages, head, and timm's model API.

A family file picks a rule and presets; :class:`OptNet` builds residual-style stages (a ResNet block as the
transition, then the rule's steps) or, for rules that sum transforms over the whole history, dense stages
(DenseNet's transition, then the fused dense steps).
"""

import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import BatchNormAct2d, create_classifier, get_device_dtype
from timm.models import build_model_with_cfg
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint, checkpoint_seq
from torch import nn

from ..blocks import BasicTransform, BottleneckTransform, DenseLayer, DenseTransition, ResidualTransition
from ..compiler import CompiledStage, compile_rule
from ..rules import Rule
from ..weights.registry import verified_overlay

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
TRANSFORMS = {'basic': BasicTransform, 'bottleneck': BottleneckTransform}


def cfg(url: str = '', **kwargs) -> dict:
    """An ImageNet pretrained cfg (timm's fields); CIFAR presets override input size, pool size and stats."""
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bilinear', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv', 'classifier': 'fc', 'license': 'apache-2.0', **kwargs,
    }


def cifar_cfg(**kwargs) -> dict:
    return cfg(num_classes=10, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0, mean=CIFAR_MEAN,
               std=CIFAR_STD, **kwargs)


class OptNet(nn.Module):
    """A network compiled from an update rule.

    Args:
        rule: the update rule (a :class:`~optnets.Rule` or its text).
        steps: compiled steps per stage, after each stage's transition.
        widths: iterate width per stage (residual) ; for dense stages the growth rate is used instead.
        block: ``'basic'``, ``'bottleneck'`` (residual T) or ``'dense'`` (DenseNet layer T).
        stem: ``'imagenet'`` (7x7/2 conv + max pool) or ``'cifar'`` (3x3 conv).
        shortcut: whether transitions are ResNet blocks (True) or plain conv blocks (False).
        growth_rate, bn_size, compression, stem_width: DenseNet presets for dense stages.
        learn_coeffs, coeff_init, coeff_shape: the rule's coefficients (see :class:`~optnets.CompiledStage`).
        step_act: a ReLU after each residual step (ResNet's post-activation); Momentum ResNets have none.
        drop_rate, proj_drop_rate, drop_path_rate: dropout before the classifier; inside DenseNet layers; stochastic
            depth of the residual transforms (timm's schedule, rising linearly to ``drop_path_rate``).
        zero_init_last: zero the last BN of each residual T, as timm's ResNet does, where an identity path carries
            the signal: transitions with a shortcut, and steps whose rule keeps its input alive when T = 0
            (``Plan.identity_path``); a step that must carry the signal itself keeps its T live.
    """

    def __init__(
            self,
            rule: Rule | str,
            steps: Sequence[int],
            widths: Sequence[int] = (64, 128, 256, 512),
            block: str = 'basic',
            stem: str = 'imagenet',
            shortcut: bool = True,
            growth_rate: int = 32,
            bn_size: Optional[int] = 4,
            compression: float = 0.5,
            stem_width: int = 64,
            learn_coeffs: bool = True,
            coeff_init: str = 'special',
            coeff_shape: str = 'scalar',
            step_act: bool = True,
            zero_init_last: bool = True,
            num_classes: int = 1000,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.grad_checkpointing = False
        dense = block == 'dense'
        plan = compile_rule(rule, linear_head=dense)
        if plan.dense != dense:
            raise ValueError(f"block={block!r} does not fit rule {str(plan.rule)!r}: rules that sum transforms "
                             "over the history take block='dense', the others 'basic' or 'bottleneck'")
        if stem not in ('imagenet', 'cifar'):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if dense and drop_path_rate:
            raise ValueError('drop_path_rate drops residual transforms; dense stages take proj_drop_rate (DenseNet\'s '
                             'drop_rate)')
        blocks = sum(1 + n for n in steps)  # timm's stochastic-depth schedule: linear in the block's depth
        drop_path = lambda block: drop_path_rate * block / max(blocks - 1, 1)  # noqa: E731
        coeffs = dict(learn_coeffs=learn_coeffs, coeff_init=coeff_init, coeff_shape=coeff_shape, **dd)

        width = stem_width
        self.stem = nn.Sequential()
        kernel, stride = (7, 2) if stem == 'imagenet' else (3, 1)
        self.stem.add_module('conv', nn.Conv2d(in_chans, width, kernel, stride, kernel // 2, bias=False, **dd))
        if dense:
            if stem == 'imagenet':
                self.stem.add_module('bn', BatchNormAct2d(width, **dd))
        else:
            self.stem.add_module('bn', nn.BatchNorm2d(width, **dd))
            self.stem.add_module('act', nn.ReLU(inplace=True))
        self.stem_pool = nn.MaxPool2d(3, 2, 1) if stem == 'imagenet' else nn.Identity()
        reduction = stride
        self.feature_info = [dict(num_chs=width, reduction=reduction, module='stem')]

        stages = []
        for i, num_steps in enumerate(steps):
            stride = 1 if i == 0 else 2
            reduction *= 2 if (i == 0 and stem == 'imagenet') else stride  # the stem's max pool
            if dense:
                transition = None if i == 0 else DenseTransition(width, int(width * compression), **dd)
                width = width if i == 0 else int(width * compression)
                stage = CompiledStage(
                    plan, num_steps, width=growth_rate, in_width=width, transition=transition,
                    transform=lambda k, s, w: DenseLayer(w, growth_rate, bn_size, proj_drop_rate, **dd), **coeffs)
            else:
                T, out, first = TRANSFORMS[block], widths[i], sum(1 + n for n in steps[:i])
                transition = ResidualTransition(T(width, out, stride, drop_path(first), **dd), width, out, stride,
                                                shortcut, **dd)
                stage = CompiledStage(
                    plan, num_steps, width=out, transition=transition,
                    activation=nn.ReLU(inplace=True) if step_act else None,
                    transform=lambda k, s, w, T=T, out=out, first=first: T(out, out, 1, drop_path(first + 1 + k), **dd),
                    **coeffs)
            stages.append(stage)
            width = stage.out_width
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.final_norm = BatchNormAct2d(width, **dd) if dense else nn.Identity()
        self.num_features = self.head_hidden_size = width
        self.global_pool, self.fc = create_classifier(width, num_classes, pool_type=global_pool, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        identity = plan.identity_path(coeff_init, relu=step_act and not dense)
        self._init_weights(zero_init_last and shortcut, zero_init_last and identity.alive and not dense)

    @torch.no_grad()
    def _init_weights(self, zero_init_transitions: bool, zero_init_steps: bool):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        for stage in self.stages:
            transforms = list(stage.transforms()) if zero_init_steps else []
            if zero_init_transitions and isinstance(stage.transition, ResidualTransition):
                transforms.append(stage.transition.transform)
            for transform in transforms:
                transform.zero_init_last()

    # -- timm model API -----------------------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, object]:
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)' if coarse else [
            (r'^stages\.(\d+)\.transition', None), (r'^stages\.(\d+)\.T_\w+\.(\d+)', None),
            (r'^stages\.(\d+)\.coeff', (99999,)), (r'^final_norm', (99999,))])

    @torch.jit.ignore
    def named_coefficients(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """The learnable coefficients of the rule, ``(name, parameter)`` as ``named_parameters`` names them."""
        for prefix, module in self.named_modules():
            if isinstance(module, CompiledStage):
                for name, param in module.coeff.named_parameters():
                    yield f'{prefix}.coeff.{name}', param

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        """The rule's coefficients: like biases, they set a mixing level, not a feature."""
        return {name for name, _ in self.named_coefficients()}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, **get_device_dtype(self))
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    @torch.jit.ignore
    def fuse(self) -> 'OptNet':
        """Fold every stage's coefficients into its conv weights (inference; call after ``eval()``)."""
        for stage in self.stages:
            stage.fuse()
        return self

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Features of the stem (index 0) and of each stage (1..); ``norm`` applies the final norm to the last."""
        assert output_fmt in ('NCHW',), 'Output shape must be NCHW.'
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        x = self.stem_pool(x)
        last = len(self.stages)
        for i, stage in enumerate(self.stages, 1):
            if stop_early and i > max_index:
                break
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(stage, x)
            else:
                x = stage(x)
            if i in take_indices:
                intermediates.append(self.final_norm(x) if norm and i == last else x)
        if intermediates_only:
            return intermediates
        return self.final_norm(x), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages (and norm, head) that the features at ``indices`` do not need."""
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        if max_index < len(self.stages):
            self.stages = self.stages[:max_index]
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            prune_norm = True  # the final norm is sized for the last stage
        if max_index == 0:
            self.stem_pool = nn.Identity()  # the stem's tap comes before its pooling
        if prune_norm:
            self.final_norm = nn.Identity()
        if prune_head or max_index < len(self.feature_info) - 1:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(self.stem(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x)
        else:
            x = self.stages(x)
        return self.final_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


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


def build(model_cls, variant: str, pretrained: bool, filter_fn=None, **kwargs):
    """timm's builder with the family's checkpoint filter; ``features_only`` taps the stem and every stage.
    Published weights are resolved and verified against the manifest before timm loads them."""
    if pretrained:
        kwargs['pretrained_cfg_overlay'] = verified_overlay(variant, kwargs.get('pretrained_cfg'),
                                                            kwargs.get('pretrained_cfg_overlay'))
    out_indices = tuple(range(len(kwargs['steps']) + 1))
    return build_model_with_cfg(model_cls, variant, pretrained, pretrained_filter_fn=filter_fn,
                                feature_cfg=dict(feature_cls='getter', out_indices=out_indices), **kwargs)
