"""The network skeletons: OptNet (stem, compiled stages, head and timm's model API) and its two builders.

A family file picks a rule and a preset (``presets``). ``ResidualOptNet`` reads like ResNet (a ResNet block
as each stage's transition, then the rule's steps); ``DenseOptNet`` like DenseNet (dense blocks whose layers
are the rule's steps, for rules that sum transforms over the whole history, DenseNet's transitions between).
"""

from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from timm.layers import BatchNormAct2d, create_classifier, get_device_dtype
from timm.models import checkpoint, checkpoint_seq
from timm.models.resnet import drop_blocks
from timm.models._features import feature_take_indices  # the helper timm's own families use; not re-exported
from torch import nn

from ..blocks import BasicTransform, BottleneckTransform, DenseLayer, DenseTransition, ResidualTransition
from ..blocks.protocol import ScalesOutput
from ..compiler import CompiledStage, compile_rule
from ..rules import Rule

TRANSFORMS = {'basic': BasicTransform, 'bottleneck': BottleneckTransform}


class OptNet(nn.Module):
    """A network compiled from an update rule: stem, compiled stages, final norm and timm's head, with timm's
    model API. The skeletons are its subclasses, each built like its paper: ``ResidualOptNet`` (ResNet) and
    ``DenseOptNet`` (DenseNet); ``OptNet.for_rule`` picks the one a rule's kind takes. A builder sets
    ``stem``, ``stem_pool``, ``stages`` (CompiledStages), ``final_norm`` and ``feature_info``, then ``_head``."""

    @staticmethod
    def for_rule(rule: Rule | str) -> type['OptNet']:
        """Rules that sum transforms over the history build DenseNet's skeleton, the others ResNet's."""
        return DenseOptNet if compile_rule(rule).dense else ResidualOptNet

    def _head(self, width: int, num_classes: int, in_chans: int, global_pool: str, drop_rate: float, dd: dict):
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.grad_checkpointing = False
        self.num_features = self.head_hidden_size = width
        self.global_pool, self.fc = create_classifier(width, num_classes, pool_type=global_pool, **dd)
        self.head_drop = nn.Dropout(drop_rate)

    @staticmethod
    def _stem(in_chans: int, width: int, stem: str, dd: dict) -> tuple[nn.Sequential, nn.Module, int]:
        """The first conv (7x7/2 then a max pool for ``'imagenet'``, 3x3 for ``'cifar'``); returns the stem, its
        pooling and its stride."""
        if stem not in ('imagenet', 'cifar'):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        kernel, stride = (7, 2) if stem == 'imagenet' else (3, 1)
        layers = nn.Sequential()
        layers.add_module('conv', nn.Conv2d(in_chans, width, kernel, stride, kernel // 2, bias=False, **dd))
        return layers, nn.MaxPool2d(3, 2, 1) if stem == 'imagenet' else nn.Identity(), stride

    @staticmethod
    def _plan(rule: Rule | str, dense: bool):
        plan = compile_rule(rule, linear_head=dense)
        if plan.dense != dense:
            kind = 'DenseOptNet' if plan.dense else 'ResidualOptNet'
            raise ValueError(
                f'rule {str(plan.rule)!r} builds a {kind}: rules that sum transforms over the history '
                "take DenseNet's skeleton, the others ResNet's"
            )
        return plan

    @torch.no_grad()
    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    # -- timm model API -----------------------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, object]:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)'
            if coarse
            else [
                (r'^stages\.(\d+)\.transition', None),
                (r'^stages\.(\d+)\.T_\w+\.(\d+)', None),
                (r'^stages\.(\d+)\.coeff', (99999,)),
                (r'^final_norm', (99999,)),
            ],
        )

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
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, **get_device_dtype(self)
        )
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


class ResidualOptNet(OptNet):
    """ResNet's skeleton (He et al. 2016) with the rule's steps: each stage is a ResNet block (the transition,
    which changes width and resolution) followed by ``steps`` compiled steps of the rule at that width.

    Args:
        rule: the update rule (a ``Rule`` or its text), one that does not sum T over the history.
        steps: the rule's steps per stage, after each stage's transition (``presets.resnet`` derives them).
        widths: the iterates' width per stage.
        block: ``'basic'`` or ``'bottleneck'``: the T of every step and transition (ResNet's branches).
        stem: ``'imagenet'`` (7x7/2 conv + max pool) or ``'cifar'`` (3x3 conv); ``stem_width`` its channels.
        shortcut: whether transitions are ResNet blocks (True) or plain conv blocks (False).
        learn_coeffs, coeff_init, coeff_shape: the rule's coefficients (see ``CompiledStage``).
        step_act: a ReLU after each step (ResNet's post-activation); Momentum ResNets have none.
        drop_rate, drop_path_rate: dropout before the classifier; stochastic depth of the transforms (timm's
            schedule, rising linearly with the block's depth to ``drop_path_rate``).
        drop_block_rate: DropBlock in the transforms of the last two stages, as timm's ResNet places it.
        memory: ``'stored'`` (autograd keeps every step's activations) or ``'reversible'``: each stage keeps two
            iterates and rebuilds the rest in backward (``optnets.compiler.reversible``; invertible rules only).
        zero_init_last: zero the last BN of each T, as timm's ResNet does, where an identity path carries the
            signal: transitions with a shortcut, and steps whose rule keeps its input alive when T = 0
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
        stem_width: int = 64,
        learn_coeffs: bool = True,
        coeff_init: str = 'special',
        coeff_shape: str = 'scalar',
        step_act: bool = True,
        zero_init_last: bool = True,
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = 'avg',
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        drop_block_rate: float = 0.0,
        memory: str = 'stored',
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        plan = self._plan(rule, dense=False)
        if block not in TRANSFORMS:
            raise ValueError(f'block must be one of {sorted(TRANSFORMS)} for rule {str(plan.rule)!r}, got {block!r}')
        T, width = TRANSFORMS[block], stem_width
        self.stem, self.stem_pool, reduction = self._stem(in_chans, width, stem, dd)
        self.stem.add_module('bn', nn.BatchNorm2d(width, **dd))
        self.stem.add_module('act', nn.ReLU(inplace=True))
        self.feature_info = [dict(num_chs=width, reduction=reduction, module='stem')]
        blocks = sum(1 + n for n in steps)  # timm's stochastic-depth schedule: linear in the block's depth
        drop_path = lambda block: drop_path_rate * block / max(blocks - 1, 1)  # noqa: E731
        stages = []
        drop_block = ([None] * len(steps) + drop_blocks(drop_block_rate))[-len(steps) :]  # timm's: the last 2 stages
        for i, (num_steps, out, db) in enumerate(zip(steps, widths, drop_block)):
            stride = 1 if i == 0 else 2
            reduction *= 2 if (i == 0 and stem == 'imagenet') else stride  # the stem's max pool
            first = sum(1 + n for n in steps[:i])
            transition = ResidualTransition(
                T(width, out, stride, drop_path(first), db, **dd), width, out, stride, shortcut, **dd
            )
            stages.append(
                CompiledStage(
                    plan,
                    num_steps,
                    width=out,
                    transition=transition,
                    activation=nn.ReLU(inplace=True) if step_act else None,
                    learn_coeffs=learn_coeffs,
                    coeff_init=coeff_init,
                    coeff_shape=coeff_shape,
                    memory=memory,
                    transform=lambda k, s, w, out=out, first=first, db=db: T(
                        out, out, 1, drop_path(first + 1 + k), db, **dd
                    ),
                    **dd,
                )
            )
            width = out
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.final_norm = nn.Identity()
        self._head(width, num_classes, in_chans, global_pool, drop_rate, dd)
        self._init_weights()
        if zero_init_last:
            alive = plan.identity_path(coeff_init, relu=step_act).alive
            for stage in self.stages:
                for transform in [
                    *(stage.transforms() if alive else ()),
                    *([stage.transition.transform] if shortcut else []),
                ]:
                    if isinstance(transform, ScalesOutput):
                        transform.zero_init_last()


class DenseOptNet(OptNet):
    """DenseNet's skeleton (Huang et al. 2017) with the rule's steps: each stage is a dense block whose layers are
    the rule's steps (T is DenseNet's BN-ReLU-conv layer, the history sum runs as one conv over the concatenated
    history), with DenseNet's transition between stages.

    Args:
        rule: the update rule, one that sums transforms over the history (``sum_j a[j]*T(x[j])``).
        steps: layers per dense block (``presets.densenet``).
        growth_rate, bn_size, compression: DenseNet(-BC)'s growth rate, bottleneck width factor (None: no
            bottleneck) and transition compression.
        stem: ``'imagenet'`` (7x7/2 conv, BN-ReLU, max pool) or ``'cifar'`` (3x3 conv); ``stem_width`` its channels.
        learn_coeffs, coeff_init, coeff_shape: the rule's coefficients (dense stages take ``'scalar'``).
        drop_rate, proj_drop_rate: dropout before the classifier; inside each layer (DenseNet's ``drop_rate``).
    """

    def __init__(
        self,
        rule: Rule | str,
        steps: Sequence[int],
        growth_rate: int = 32,
        bn_size: Optional[int] = 4,
        compression: float = 0.5,
        stem: str = 'imagenet',
        stem_width: int = 64,
        learn_coeffs: bool = True,
        coeff_init: str = 'special',
        coeff_shape: str = 'scalar',
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = 'avg',
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        plan = self._plan(rule, dense=True)
        width = stem_width
        self.stem, self.stem_pool, reduction = self._stem(in_chans, width, stem, dd)
        if stem == 'imagenet':
            self.stem.add_module('bn', BatchNormAct2d(width, **dd))
        self.feature_info = [dict(num_chs=width, reduction=reduction, module='stem')]
        stages = []
        for i, num_steps in enumerate(steps):
            reduction *= 2 if (i > 0 or stem == 'imagenet') else 1  # a transition's pool, or the stem's max pool
            transition = None if i == 0 else DenseTransition(width, int(width * compression), **dd)
            width = width if i == 0 else int(width * compression)
            stages.append(
                CompiledStage(
                    plan,
                    num_steps,
                    width=growth_rate,
                    in_width=width,
                    transition=transition,
                    learn_coeffs=learn_coeffs,
                    coeff_init=coeff_init,
                    coeff_shape=coeff_shape,
                    transform=lambda k, s, w: DenseLayer(w, growth_rate, bn_size, proj_drop_rate, **dd),
                    **dd,
                )
            )
            width = stages[-1].out_width
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.final_norm = BatchNormAct2d(width, **dd)
        self._head(width, num_classes, in_chans, global_pool, drop_rate, dd)
        self._init_weights()
