"""LPOM for convolutional networks: each layer is ``X[i+1] = phi(L_i(X[i]))`` with ``L_i`` any linear map whose
weights enter linearly, so the lifted objective and its block updates are the MLP's with ``W`` replaced by ``L``:

    X[i] <- phi(L[i-1](X[i-1]) - (mu[i+1]/mu[i]) L[i]^T (phi(L[i](X[i])) - X[i+1]))

``L^T`` is the adjoint (for a convolution, the transposed convolution, here taken as the linear map's
vector-Jacobian product). The weight subproblem is the MLP's least squares in row form: a convolution is a matrix
product over the image's patches (``unfold``), so ``solver.weight_update`` solves it with the same guarantee.
Strides and average pooling after a convolution are linear and join its map (convolution then average
pooling is one convolution, with a wider kernel at a larger stride: :func:`spread`); max pooling is not linear
and is refused. A layer spec is a string: ``conv32x5`` (32 channels, 5x5, padding ``k // 2``; ``conv32x3s2``
with stride 2; ``conv32x5bn`` adds batch normalization, see :class:`Conv`; ``conv32x3+x`` or ``conv32x3-0.5x``
adds a skip, the identity path of a residual step), ``avg2`` (2x2 average pooling, joined to the convolution
before it), ``fc128`` (flatten, then 128 units); the output layer (one unit a class) is added by the estimator.
"""

import functools
import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import solver
from .estimator import DEFAULT_MU, LPOM


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
    ``W``: the weight update solves for ``W`` with the skip's part as a fixed offset (:meth:`offset`).

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
    ):
        if skip and (channels_in != channels_out or stride != 1):
            raise ValueError(
                f"a skip needs the input's shape at the output: {channels_in} -> {channels_out} "
                f'channels, stride {stride}'
            )
        self.channels_in, self.channels_out, self.kernel, self.pool = channels_in, channels_out, kernel, pool
        self.stride, self.skip = stride, skip
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

    def refresh(self, weight, x, momentum: float = 0.1, eps: float = 1e-5):
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

    def use_running(self, eps: float = 1e-5):
        """Normalization from the running averages (before any batch, mean 0 and variance 1)."""
        self._set(self.running['mean'], self.running['var'], eps)

    def _set(self, mean, var, eps):
        self.scale = torch.rsqrt(var + eps)
        self.shift = -mean * self.scale

    def folded(self, weight):
        """The weight of the plain convolution this layer computes now (its normalization folded in)."""
        if self.scale is None:
            return weight
        return torch.cat([weight[:, :-1] * self.scale[:, None], (weight[:, -1] * self.scale + self.shift)[:, None]], 1)

    def unfold_weight(self, folded):
        """The inverse of :meth:`folded`."""
        if self.scale is None:
            return folded
        return torch.cat(
            [folded[:, :-1] / self.scale[:, None], ((folded[:, -1] - self.shift) / self.scale)[:, None]], 1
        )

    def conv_size(self, size: int) -> int:
        """The convolution's output size along one side (before pooling)."""
        return (size - 1) // self.stride + 1  # padding k // 2 with an odd k

    def out_shape(self, shape):
        _, height, width = shape
        return self.channels_out, self.conv_size(height) // self.pool, self.conv_size(width) // self.pool

    def fan_in(self):
        return self.channels_in * self.kernel**2

    def spread(self, dtype) -> torch.Tensor:
        """:func:`spread` of this layer's kernel size, stride and pooling."""
        return spread(self.kernel, self.stride, self.pool).to(dtype)

    def convolve(self, weight, x):
        """The convolution and its pooling, as one convolution (:func:`spread`), its normalization folded in."""
        weight = self.folded(weight)
        kernel = weight[:, :-1].reshape(self.channels_out, self.channels_in, self.kernel, self.kernel)
        if self.pool > 1:
            a = self.spread(kernel.dtype)
            kernel = a @ kernel @ a.T
        return F.conv2d(x, kernel, weight[:, -1], self.stride * self.pool, padding=self.kernel // 2)

    def _pool(self, y):
        return F.avg_pool2d(y, self.pool) if self.pool > 1 else y

    def apply(self, weight, x):
        y = self.convolve(weight, x)
        return y + self._pool(self.skip * x) if self.skip else y

    def offset(self, x):
        """The skip's part of the output as rows (None without a skip): ``to_rows(apply(W, x)) = rows(x) W^T +
        offset(x)``."""
        return self.to_rows(self._pool(self.skip * x)) if self.skip else None

    def rows(self, x):
        """The (pooled) patches, one row per output position: ``apply(W, x)`` is ``rows(x) @ W^T`` rearranged.
        With pooling, the wider patches of :func:`spread`'s convolution, mapped back by ``A`` on each side."""
        n = x.shape[0]
        a = self.spread(x.dtype)
        wide = a.shape[0]
        patches = F.unfold(x, wide, padding=self.kernel // 2, stride=self.stride * self.pool)
        patches = patches.reshape(n, self.channels_in, wide, wide, -1)
        if self.pool > 1:
            return torch.einsum('niuvl,uk,vm->nlikm', patches, a, a).reshape(-1, self.fan_in())
        return patches.permute(0, 4, 1, 2, 3).reshape(-1, self.fan_in())

    @staticmethod
    def to_rows(y):
        return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])

    def module(self, weight) -> nn.Module:
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

    def forward(self, x):
        return self.map(x) + self.skip * x


class Dense:
    """``flatten(x) @ W^T + b``; the weight is ``out x (in + 1)``, bias last."""

    def __init__(self, features_in: int, features_out: int, in_shape):
        self.features_in, self.features_out, self.in_shape = features_in, features_out, tuple(in_shape)

    def out_shape(self, shape):
        return (self.features_out,)

    def fan_in(self):
        return self.features_in

    @staticmethod
    def folded(weight):
        return weight

    unfold_weight = folded

    def apply(self, weight, x):
        return solver.preactivation(weight, x.flatten(1))

    @staticmethod
    def rows(x):
        return x.flatten(1)

    @staticmethod
    def offset(x):
        return None

    @staticmethod
    def to_rows(y):
        return y

    def module(self, weight) -> nn.Module:
        linear = nn.Linear(self.features_in, self.features_out, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight[:, :-1])
            linear.bias.copy_(weight[:, -1])
        return nn.Sequential(nn.Flatten(), linear) if len(self.in_shape) > 1 else linear


def adjoint(layer, weight, r, like):
    """``L^T r``: the vector-Jacobian product of the linear part (bias dropped) at any point ``like``."""
    point = like.detach().requires_grad_()
    with torch.enable_grad():
        out = layer.apply(torch.cat([weight[:, :-1], torch.zeros_like(weight[:, -1:])], 1), point)
        return torch.autograd.grad(out, point, r)[0]


CONV = r'conv(\d+)x(\d+)(?:s(\d+))?(bn)?(([+-])(\d+(?:\.\d+)?(?:e[+-]?\d+)?)?x)?'  # channels, kernel, stride, bn, skip


def parse(architecture, input_shape, classes: int) -> list:
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
                layers.append(Conv(shape[0], channels, kernel, norm=bool(conv[4]), stride=stride, skip=skip))
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


# -- the solver, with linear maps in place of matrices --------------------------------------------------------------
def forward(layers, weights, x, acts, refresh: bool = False) -> list:
    """Consistent activations; ``refresh`` first sets each normalization from the batch it sees."""
    xs = [x]
    for layer, weight, act in zip(layers, weights, acts):
        if refresh and getattr(layer, 'norm', False):
            layer.refresh(weight, xs[-1])
        xs.append(act.phi(layer.apply(weight, xs[-1])))
    return xs


def update(i, layers, xs, weights, acts, mu, loss, target, ratio=None):
    """The new ``X[i]`` (the module docstring's formula; the output layer takes the loss's gradient)."""
    z = layers[i - 1].apply(weights[i - 1], xs[i - 1])
    if i == len(weights):
        step = 1 / mu[i] if ratio is None else ratio  # the output's ratio replaces 1/mu[n]
        return acts[i - 1].phi(z - step * solver.loss_gradient(loss, xs[i], target))
    residual = acts[i].phi(layers[i].apply(weights[i], xs[i])) - xs[i + 1]
    ratio = mu[i + 1] / mu[i] if ratio is None else ratio
    return acts[i - 1].phi(z - ratio * adjoint(layers[i], weights[i], residual, xs[i]).reshape(z.shape))


def weight_step(i, layers, xs, weights, acts, iters, reg):
    """``W[i]`` by the MLP's accelerated proximal gradient on the layer's patches (never raises the objective)."""
    layer = layers[i]
    folded = solver.weight_update(
        layer.folded(weights[i]), layer.rows(xs[i]), layer.to_rows(xs[i + 1]), acts[i], iters, reg, layer.offset(xs[i])
    )  # normalized: solved for the folded weights
    return layer.unfold_weight(folded)


def operator_norm_squared(layer, weight, shape, iters: int = 20, seed: int = 0) -> float:
    """``||L||_2^2`` by power iteration on ``L^T L`` (a lower estimate that tightens with ``iters``)."""
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed), dtype=weight.dtype)
    value = 0.0
    for _ in range(iters):
        x = x / x.norm()
        bare = torch.cat([weight[:, :-1], torch.zeros_like(weight[:, -1:])], 1)
        y = adjoint(layer, weight, layer.apply(bare, x), x)
        value, x = float((x * y).sum()), y
    return value


def contraction_factors(layers, weights, acts, input_shape, iters: int = 20) -> list[float]:
    """``beta[i-1] beta[i] ||L[i]||_2^2`` of each hidden update: Theorem 2's rho without its ``mu`` ratio."""
    shapes = [tuple(input_shape)]
    for layer in layers:
        shapes.append(layer.out_shape(shapes[-1]))
    return [
        acts[i - 1].lipschitz * acts[i].lipschitz * operator_norm_squared(layers[i], weights[i], shapes[i], iters)
        for i in range(1, len(weights))
    ]


def objective(layers, xs, weights, acts, mu, loss, target) -> torch.Tensor:
    """The LPOM objective with the maps ``L`` (needs closed-form f and g)."""
    total = solver.loss_value(loss, xs[-1], target)
    for i in range(1, len(xs)):
        act, z = acts[i - 1], layers[i - 1].apply(weights[i - 1], xs[i - 1])
        total = total + mu[i] * (act.f(xs[i]).sum() + act.g(z).sum() + ((xs[i] - z) ** 2).sum() / 2)
    return total


class LPOMConv(LPOM):
    """LPOM for a convolutional network, with :class:`~optnets.lpom.LPOM`'s scikit-learn surface. ``X`` holds
    images ``(n, *input_shape)`` or their flattened rows; ``architecture`` is the layer spec of this module's
    docstring, the output layer added. Activation updates run in layer order.

    Fitted attributes: ``layers_`` (the linear maps) besides LPOM's.
    """

    hidden_layer_sizes, schedule, parallel_weights = (), 'serial', False  # fixed here

    def __init__(
        self,
        architecture=('conv32x5', 'avg2', 'conv64x5', 'avg2'),
        input_shape=(1, 28, 28),
        activation='relu',
        out_activation='identity',
        mu=DEFAULT_MU,
        loss='cross_entropy',
        activation_iters=5,
        weight_iters=3,
        pinv_reg=1e-3,
        activation_kwargs=None,
        rho_max=None,
        max_iter=1,
        batch_size=100,
        warm_start=False,
        random_state=None,
        monitor=False,
        progress=False,
    ):
        self.architecture = architecture
        self.input_shape = input_shape
        self.activation = activation
        self.out_activation = out_activation
        self.mu = mu
        self.loss = loss
        self.activation_iters = activation_iters
        self.weight_iters = weight_iters
        self.pinv_reg = pinv_reg
        self.activation_kwargs = activation_kwargs
        self.rho_max = rho_max
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.warm_start = warm_start
        self.random_state = random_state
        self.monitor = monitor
        self.progress = progress

    def _layer_count(self) -> int:
        return len(parse(self.architecture, self.input_shape, 2))

    def _initialize(self, n_features: int, classes):
        super()._initialize(n_features, classes)
        self.layers_ = parse(self.architecture, self.input_shape, len(self.classes_))
        return self

    def _weight_shapes(self, n_features: int, n_outputs: int) -> list[tuple]:
        shapes = []
        for layer in parse(self.architecture, self.input_shape, n_outputs):
            d_out = layer.channels_out if isinstance(layer, Conv) else layer.features_out
            spread = layer.kernel**2 if isinstance(layer, Conv) else 1
            shapes.append((layer.fan_in(), d_out, layer.fan_in(), d_out * spread))
        return shapes

    def _inputs(self, x, reset: bool, y=None, training: bool = False):
        x = np.asarray(x) if not torch.is_tensor(x) else x
        flat = x.reshape(len(x), -1) if getattr(x, 'ndim', 2) > 2 else x
        checked = super()._inputs(flat, reset, y, training)
        rows = checked[0] if training else checked
        if rows.shape[1] != math.prod(self.input_shape):
            raise ValueError(
                f'X has {rows.shape[1]} features per sample, input_shape {tuple(self.input_shape)} '
                f'needs {math.prod(self.input_shape)}'
            )
        images = rows.reshape(-1, *self.input_shape)
        return (images, checked[1]) if training else images

    def _step(self, x, target, acts, mu):
        layers, weights = self.layers_, self.weights_
        watch = self.monitor and all(a.f is not None and a.g is not None for a in acts)
        value = (lambda: float(objective(layers, xs, weights, acts, mu, self.loss, target))) if watch else None
        xs = forward(layers, weights, x, acts, refresh=True)  # the maps this step's updates use, BN's from x
        factors = self._contraction_factors(acts) if self.monitor or self.rho_max else None
        record = dict(
            rho=solver.rhos(factors, mu) if self.monitor else None,
            output_rho=solver.output_rho(acts, mu, self.loss),
            objective=[],
        )
        ratios = (
            solver.capped_ratios(factors, mu, self.rho_max, solver.output_factor(acts, self.loss))
            if self.rho_max
            else {}
        )
        for _ in range(self.activation_iters):
            for i in range(1, len(weights) + 1):
                before = value() if watch else None
                xs[i] = update(i, layers, xs, weights, acts, mu, self.loss, target, ratios.get(i))
                if watch:
                    record['objective'].append((f'X[{i}]', before, value()))
        for i in range(len(weights)):
            before = value() if watch else None
            weights[i].copy_(weight_step(i, layers, xs, weights, acts, self.weight_iters, self.pinv_reg))
            if watch:
                record['objective'].append((f'W[{i}]', before, value()))
        if self.monitor:
            self.history_.append(record)
        return self

    def _inference(self):
        for layer in self.layers_:
            if getattr(layer, 'norm', False):
                layer.use_running()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_is_fitted(self)
        self._inference()
        return forward(self.layers_, self.weights_, x.reshape(-1, *self.input_shape), self._settings()[0])[-1]

    def rho(self) -> list[float]:
        """Theorem 2's factor of each hidden update, ``(mu[i+1]/mu[i]) beta[i-1] beta[i] ||L[i]||_2^2``, the
        operator norm by power iteration."""
        check_is_fitted(self)
        acts, mu = self._settings()
        return solver.rhos(self._contraction_factors(acts), mu)

    def _contraction_factors(self, acts) -> list[float]:
        return contraction_factors(self.layers_, self.weights_, acts, self.input_shape)

    def objective(self, X, y) -> float:
        check_is_fitted(self)
        acts, mu = self._settings()
        xs = forward(self.layers_, self.weights_, self._inputs(X, reset=False), acts)
        return float(objective(self.layers_, xs, self.weights_, acts, mu, self.loss, self._targets(y)))

    def to_torch(self) -> nn.Sequential:
        check_is_fitted(self)
        self._inference()  # normalization from the running averages, folded into the convolutions
        modules = []
        for layer, weight, act in zip(self.layers_, self.weights_, self._settings()[0]):
            modules += [layer.module(weight), act.module()]
        return nn.Sequential(*modules)
