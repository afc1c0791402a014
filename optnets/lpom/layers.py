"""The layers LPOM trains, as linear maps: layer ``i`` is ``X[i+1] = phi(L_i(X[i]))`` with ``L_i`` linear in
``X[i]`` and in its weight ``W[i]`` (``d_out x (fan_in + 1)``, bias last). A dense layer is the map ``[X, 1] W^T``
(the MLP is an architecture of dense layers); a convolution is a matrix product over the image's patches
(``unfold``), so the weight subproblem is the same least squares in row form (``solver.weight_step``). Each layer
gives the solver its map (``apply``), its adjoint ``L^T`` (``adjoint``), its rows and its ``||L||_2^2``.

Strides and average pooling after a convolution are linear and join its map (convolution then average
pooling is one convolution, with a wider kernel at a larger stride: ``spread``); max pooling is not linear
and is refused. A layer spec is a string: ``conv32x5`` (32 channels, 5x5, padding ``k // 2``; ``conv32x3s2``
with stride 2; ``conv32x5bn`` adds batch normalization, see ``Conv``; ``conv32x3+x`` or ``conv32x3-0.5x``
adds a skip, the identity path of a residual step), ``avg2`` (2x2 average pooling, joined to the convolution
before it), ``fc128`` (flatten, then 128 units); the output layer (one unit a class) is added by ``parse``.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, ...]
"""A sample's shape: ``(channels, height, width)`` or ``(features,)``."""


def preactivation(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[x, 1] W^T``: the bias is ``W``'s last column."""
    return torch.addmm(weight[:, -1], x, weight[:, :-1].T)


def spectral_norm_squared(weight: torch.Tensor) -> float:
    """``||W||_2^2``, the largest eigenvalue of the smaller Gram matrix (several times faster than an SVD)."""
    gram = weight @ weight.T if weight.shape[0] <= weight.shape[1] else weight.T @ weight
    return torch.linalg.eigvalsh(gram.double())[-1].item()


def glorot(d_in: int, d_out: int, fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
    """A ``d_out x (d_in + 1)`` weight: Glorot uniform over ``fan_in + fan_out``, zero bias (last column)."""
    bound = math.sqrt(6 / (fan_in + fan_out))
    return torch.cat([(torch.rand(d_out, d_in, generator=generator) * 2 - 1) * bound, torch.zeros(d_out, 1)], 1)


def without_bias(weight: torch.Tensor) -> torch.Tensor:
    """``W`` with its bias column set to 0: the linear part of an affine map."""
    return torch.cat([weight[:, :-1], torch.zeros_like(weight[:, -1:])], 1)


@functools.lru_cache(maxsize=None)
def spread(kernel: int, stride: int, pool: int) -> torch.Tensor:
    """``A``, ``k' x k`` with ``k' = k + s (P - 1)``: a convolution (kernel ``w``, stride ``s``, padding ``k // 2``)
    then ``P x P`` average pooling is the convolution with kernel ``A w A^T``, stride ``s P`` and the same padding,
    whose output has the pooled size. ``A[u, t] = 1/P`` where ``u - t`` is one of ``0, s, ..., s (P - 1)``: output
    ``q`` averages the convolution at ``P q + r``, which reads ``x`` at ``s P q + s r + t``."""
    lag = torch.arange(kernel + stride * (pool - 1))[:, None] - torch.arange(kernel)
    return ((lag >= 0) & (lag % stride == 0) & (lag < stride * pool)).double() / pool


class Conv:
    """``avg_pool(conv2d(x, W, b, stride, padding=k // 2) + skip * x, pool)``; the weight is ``out x (in*k*k + 1)``,
    bias last. The skip (a residual step's identity path, fixed) is linear in ``x`` and leaves the map linear in
    ``W``: the weight update solves for ``W`` with the skip's part as a fixed offset (``offset``).

    With ``norm``, batch normalization as LPOM can have it: the output is then ``y * scale + shift`` per channel,
    a fixed affine map during each step's block updates, with ``scale, shift`` set from the step's current
    activations (``refresh``: ``1/sqrt(var + eps)`` and ``-mean * scale``) and, for inference, from running
    averages (``use_running``). The map stays linear in the weights: the weight update solves for the scaled
    weights and maps back."""

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        kernel: int,
        pool: int = 1,
        norm: bool = False,
        stride: int = 1,
        skip: float = 0.0,
        in_shape: Shape | None = None,
    ):
        if skip and (channels_in != channels_out or stride != 1):
            raise ValueError(
                f"a skip needs the input's shape at the output: {channels_in} -> {channels_out} "
                f'channels, stride {stride}'
            )
        self.channels_in, self.channels_out, self.kernel, self.pool = channels_in, channels_out, kernel, pool
        self.stride, self.skip, self.in_shape = stride, skip, in_shape
        self.norm, self.scale, self.shift = norm, None, None
        # the running averages, as PyTorch's BatchNorm starts them; updated in place, so that whoever holds these
        # tensors (the estimator's state, a LightningModule's buffers) holds the statistics
        self.running = (
            dict(
                mean=torch.zeros(channels_out), var=torch.ones(channels_out), batches=torch.zeros((), dtype=torch.long)
            )
            if norm
            else {}
        )

    def refresh(self, weight: torch.Tensor, x: torch.Tensor, momentum: float = 0.1, eps: float = 1e-5) -> None:
        """Normalization from ``x``'s batch (and the running averages updated with it: the first batch's
        statistics, then an exponential average with ``momentum``)."""
        self.scale = self.shift = None
        y = self.convolve(weight, x)
        batch = dict(mean=y.mean((0, 2, 3)), var=y.var((0, 2, 3), unbiased=False))
        first = int(self.running['batches']) == 0
        for key, new in batch.items():
            old = self.running[key]
            old.copy_(new if first else (1 - momentum) * old + momentum * new)
        self.running['batches'] += 1
        self._set(batch['mean'], batch['var'], eps)

    def use_running(self, eps: float = 1e-5) -> None:
        """Normalization from the running averages (before any batch, mean 0 and variance 1)."""
        self._set(self.running['mean'], self.running['var'], eps)

    def _set(self, mean, var, eps):
        self.scale = torch.rsqrt(var + eps)
        self.shift = -mean * self.scale

    def folded(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight of the plain convolution this layer computes now (its normalization folded in)."""
        if self.scale is None:
            return weight
        return torch.cat([weight[:, :-1] * self.scale[:, None], (weight[:, -1] * self.scale + self.shift)[:, None]], 1)

    def unfold_weight(self, folded: torch.Tensor) -> torch.Tensor:
        """The inverse of ``folded``."""
        if self.scale is None:
            return folded
        return torch.cat(
            [folded[:, :-1] / self.scale[:, None], ((folded[:, -1] - self.shift) / self.scale)[:, None]], 1
        )

    def conv_size(self, size: int) -> int:
        """The convolution's output size along one side (before pooling)."""
        return (size - 1) // self.stride + 1  # padding k // 2 with an odd k

    def out_shape(self, shape: Shape) -> Shape:
        _, height, width = shape
        return self.channels_out, self.conv_size(height) // self.pool, self.conv_size(width) // self.pool

    def fan_in(self) -> int:
        return self.channels_in * self.kernel**2

    @property
    def width(self) -> int:
        """Output channels: the weight's rows."""
        return self.channels_out

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """Glorot uniform, the fan-out counting the kernel (as PyTorch's ``xavier_uniform_``)."""
        return glorot(self.fan_in(), self.channels_out, self.fan_in(), self.channels_out * self.kernel**2, generator)

    def spread(self, dtype: torch.dtype) -> torch.Tensor:
        """``spread`` of this layer's kernel size, stride and pooling."""
        return spread(self.kernel, self.stride, self.pool).to(dtype)

    def convolve(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The convolution and its pooling, as one convolution (``spread``), its normalization folded in."""
        weight = self.folded(weight)
        kernel = weight[:, :-1].reshape(self.channels_out, self.channels_in, self.kernel, self.kernel)
        if self.pool > 1:
            a = self.spread(kernel.dtype)
            kernel = a @ kernel @ a.T
        return F.conv2d(x, kernel, weight[:, -1], self.stride * self.pool, padding=self.kernel // 2)

    def _pool(self, y):
        return F.avg_pool2d(y, self.pool) if self.pool > 1 else y

    def apply(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = self.convolve(weight, x)
        return y + self._pool(self.skip * x) if self.skip else y

    def offset(self, x: torch.Tensor) -> torch.Tensor | None:
        """The skip's part of the output as rows (None without a skip): ``to_rows(apply(W, x)) = rows(x) W^T +
        offset(x)``."""
        return self.to_rows(self._pool(self.skip * x)) if self.skip else None

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """The (pooled) patches, one row per output position: ``apply(W, x)`` is ``rows(x) @ W^T`` rearranged.
        With pooling, the wider patches of ``spread``'s convolution, mapped back by ``A`` on each side."""
        n = x.shape[0]
        a = self.spread(x.dtype)
        wide = a.shape[0]
        patches = F.unfold(x, wide, padding=self.kernel // 2, stride=self.stride * self.pool)
        patches = patches.reshape(n, self.channels_in, wide, wide, -1)
        if self.pool > 1:
            return torch.einsum('niuvl,uk,vm->nlikm', patches, a, a).reshape(-1, self.fan_in())
        return patches.permute(0, 4, 1, 2, 3).reshape(-1, self.fan_in())

    @staticmethod
    def to_rows(y: torch.Tensor) -> torch.Tensor:
        return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])

    def adjoint(self, weight: torch.Tensor, r: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``L^T r``: the vector-Jacobian product of the linear part (bias dropped) at any point ``like``."""
        point = like.detach().requires_grad_()
        with torch.enable_grad():
            return torch.autograd.grad(self.apply(without_bias(weight), point), point, r)[0]

    def norm_squared(self, weight: torch.Tensor) -> float:
        """``||L||_2^2`` by ``power_norm_squared`` (the map's matrix is never formed)."""
        return power_norm_squared(self, weight)

    def module(self, weight: torch.Tensor) -> nn.Module:
        weight = self.folded(weight)
        conv = nn.Conv2d(
            self.channels_in, self.channels_out, self.kernel, self.stride, padding=self.kernel // 2, dtype=weight.dtype
        )
        with torch.no_grad():
            conv.weight.copy_(weight[:, :-1].reshape_as(conv.weight))
            conv.bias.copy_(weight[:, -1])
        step = Skip(conv, self.skip) if self.skip else conv
        return nn.Sequential(step, nn.AvgPool2d(self.pool)) if self.pool > 1 else step


class Skip(nn.Module):
    """``map(x) + skip * x``: a residual step's linear part in PyTorch."""

    def __init__(self, map: nn.Module, skip: float):
        super().__init__()
        self.map, self.skip = map, skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x) + self.skip * x


class Dense:
    """``flatten(x) @ W^T + b``; the weight is ``out x (in + 1)``, bias last."""

    def __init__(self, features_in: int, features_out: int, in_shape: Shape):
        self.features_in, self.features_out, self.in_shape = features_in, features_out, tuple(in_shape)

    def out_shape(self, shape: Shape) -> Shape:
        return (self.features_out,)

    def fan_in(self) -> int:
        return self.features_in

    @property
    def width(self) -> int:
        """Output features: the weight's rows."""
        return self.features_out

    def init(self, generator: torch.Generator) -> torch.Tensor:
        return glorot(self.features_in, self.features_out, self.features_in, self.features_out, generator)

    @staticmethod
    def folded(weight: torch.Tensor) -> torch.Tensor:
        return weight

    unfold_weight = folded

    def apply(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return preactivation(weight, x.flatten(1))

    @staticmethod
    def adjoint(weight: torch.Tensor, r: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``L^T r = r W`` (the bias column dropped), in the shape of ``like``."""
        return (r @ weight[:, :-1]).reshape(like.shape)

    @staticmethod
    def norm_squared(weight: torch.Tensor) -> float:
        """``||L||_2^2 = ||W||_2^2`` (the bias column dropped), exactly."""
        return spectral_norm_squared(weight[:, :-1])

    @staticmethod
    def rows(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    @staticmethod
    def offset(x: torch.Tensor) -> None:
        return None

    @staticmethod
    def to_rows(y: torch.Tensor) -> torch.Tensor:
        return y

    def module(self, weight: torch.Tensor) -> nn.Module:
        linear = nn.Linear(self.features_in, self.features_out, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight[:, :-1])
            linear.bias.copy_(weight[:, -1])
        return nn.Sequential(nn.Flatten(), linear) if len(self.in_shape) > 1 else linear


CONV = r'conv(\d+)x(\d+)(?:s(\d+))?(bn)?(([+-])(\d+(?:\.\d+)?(?:e[+-]?\d+)?)?x)?'  # channels, kernel, stride, bn, skip


Layer = Union[Conv, Dense]
"""A layer LPOM trains: a linear map of its input and of its weight."""


def power_norm_squared(layer: Layer, weight: torch.Tensor, iters: int = 20, seed: int = 0) -> float:
    """``||L||_2^2`` of any layer on its ``in_shape`` by power iteration on ``L^T L`` (a lower estimate that
    tightens with ``iters``)."""
    x = torch.randn((1, *layer.in_shape), generator=torch.Generator().manual_seed(seed), dtype=weight.dtype)
    value = 0.0
    for _ in range(iters):
        x = x / x.norm()
        y = layer.adjoint(weight, layer.apply(without_bias(weight), x), x)
        value, x = float((x * y).sum()), y
    return value


def parse(architecture: Sequence[str], input_shape: Shape, classes: int) -> list[Layer]:
    """The layers of a spec like ``('conv32x5', 'avg2', 'conv64x3s2', 'fc128')`` on images of ``input_shape``,
    then the output layer; every layer's map is linear (max pooling is refused, and says why)."""
    if isinstance(architecture, str):
        raise ValueError(
            f'architecture is a sequence of layer specs such as ("conv32x5", "avg2"), got the string {architecture!r}'
        )
    layers, shape = [], tuple(input_shape)
    if len(shape) not in (1, 3) or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
        raise ValueError(
            f'input_shape is (channels, height, width) or (features,), each at least 1, got {input_shape!r}'
        )
    for item in architecture:
        conv, pool, dense = (re.fullmatch(p, str(item)) for p in (CONV, r'avg(\d+)', r'fc(\d+)'))
        if conv:
            if len(shape) != 3:
                raise ValueError(f'{item!r} after a dense layer: convolutions need images')
            channels, kernel, stride = int(conv[1]), int(conv[2]), int(conv[3] or 1)
            if channels < 1:
                raise ValueError(f'{item!r}: a convolution needs at least 1 output channel')
            if kernel % 2 == 0:
                raise ValueError(f'{item!r}: the kernel must be odd (padding k // 2 on each side)')
            if stride < 1:
                raise ValueError(f'{item!r}: the stride must be at least 1')
            skip = float(f'{conv[6]}{conv[7] or 1}') if conv[5] else 0.0  # '+x': 1, '-0.5x': -0.5
            try:
                layers.append(
                    Conv(shape[0], channels, kernel, norm=bool(conv[4]), stride=stride, skip=skip, in_shape=shape)
                )
            except ValueError as error:
                raise ValueError(f'{item!r}: {error}') from None
        elif pool:
            if not layers or not isinstance(layers[-1], Conv) or layers[-1].pool > 1:
                raise ValueError(f'{item!r} must follow a convolution: average pooling joins its linear map')
            size = int(pool[1])
            if not 1 <= size <= min(shape[1:]):
                raise ValueError(
                    f"{item!r}: the pooling window must be between 1 and the map's size {shape[1]}x{shape[2]}"
                )
            layers[-1].pool = size
            shape = (shape[0], *(side // size for side in shape[1:]))
            continue
        elif dense:
            if int(dense[1]) < 1:
                raise ValueError(f'{item!r}: a dense layer needs at least 1 unit')
            layers.append(Dense(math.prod(shape), int(dense[1]), shape))
        elif str(item).startswith('max'):
            raise ValueError(
                f"{item!r}: max pooling is not linear, so it cannot be part of an LPOM layer's map "
                '(the lifted objective needs L linear in X and in W); use avgN or a strided layer'
            )
        else:
            raise ValueError(
                f'unknown layer {item!r}: use convCxK (convCxKsS strided, convCxKbn normalized, '
                'convCxK+x residual), avgN or fcN'
            )
        shape = layers[-1].out_shape(shape)
    return layers + [Dense(math.prod(shape), classes, shape)]
