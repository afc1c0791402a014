"""``LPOM``: a scikit-learn style estimator that trains an MLP without backpropagation."""
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import solver
from .activations import get_activation

LOSSES = ('mse', 'cross_entropy')
SCHEDULES = ('serial', 'parallel')


class LPOM:
    """Lifted proximal operator machine: an MLP ``layers[0] -> ... -> layers[-1]`` trained by block coordinate
    descent on the LPOM objective (activations by fixed-point iteration, weights by accelerated proximal gradient).

    Args:
        layers: widths, input first, classes last (e.g. ``[784, 300, 10]``).
        activation: hidden activation: a name (relu, leaky_relu, sigmoid, tanh, elu, softplus, hardtanh), an
            ``Activation`` or any non-decreasing Lipschitz callable; ``activation_kwargs`` e.g. ``{'alpha': 0.1}``.
        out_activation: the output layer's activation (``identity`` by default: see the README's measurement).
        mu: weight of each layer's terms, one number or one per layer (``layers[1:]``); all positive.
        loss: ``cross_entropy`` (default) or ``mse`` (the paper's).
        schedule: activation updates in layer order (``serial``) or all at once (``parallel``, Jacobi).
        parallel_weights: update the layers' weights concurrently (they are independent given the activations).
        activation_iters, weight_iters: fixed-point sweeps and APG iterations per mini-batch.
        pinv_reg: relative ridge of the regularised pseudo-inverse solve.
        seed: makes initialisation and shuffling reproducible.
    """

    def __init__(self, layers: Sequence[int] = (784, 300, 10), activation='relu', out_activation='identity',
                 mu=1.0, loss: str = 'cross_entropy', schedule: str = 'serial', parallel_weights: bool = False,
                 activation_iters: int = 5, weight_iters: int = 3, pinv_reg: float = 1e-3,
                 activation_kwargs: dict | None = None, seed: int = 0, dtype=torch.float32, progress: bool = True):
        self.layers = [int(w) for w in layers]
        if len(self.layers) < 2 or min(self.layers) < 1:
            raise ValueError(f'layers must list at least an input and an output width, all positive: {layers}')
        mu = [float(mu)] * (len(self.layers) - 1) if np.isscalar(mu) else [float(m) for m in mu]
        if len(mu) != len(self.layers) - 1:
            raise ValueError(f'mu needs one value per layer after the input ({len(self.layers) - 1}), got {len(mu)}')
        if not all(m > 0 and math.isfinite(m) for m in mu):
            raise ValueError(f'mu must be positive (it weighs convex terms), got {mu}')
        if loss not in LOSSES:
            raise ValueError(f'loss must be one of {LOSSES}, got {loss!r}')
        if schedule not in SCHEDULES:
            raise ValueError(f'schedule must be one of {SCHEDULES}, got {schedule!r}')
        hidden = get_activation(activation, **(activation_kwargs or {}))
        self.acts = [hidden] * (len(self.layers) - 2) + [get_activation(out_activation)]
        self.mu = [None, *mu]
        self.loss, self.schedule, self.parallel_weights = loss, schedule, parallel_weights
        self.activation_iters, self.weight_iters, self.pinv_reg = activation_iters, weight_iters, pinv_reg
        self.seed, self.dtype, self.progress = seed, dtype, progress
        self.generator = torch.Generator().manual_seed(seed)
        self.weights = [self._init_weight(d_in, d_out) for d_in, d_out in zip(self.layers, self.layers[1:])]

    def _init_weight(self, d_in: int, d_out: int) -> torch.Tensor:
        bound = math.sqrt(6 / (d_in + d_out))  # Glorot uniform, zero bias
        weight = (torch.rand(d_out, d_in, generator=self.generator, dtype=self.dtype) * 2 - 1) * bound
        return torch.cat([weight, torch.zeros(d_out, 1, dtype=self.dtype)], 1)

    # -- data checks ---------------------------------------------------------------------------------------------
    def _inputs(self, x) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=self.dtype)
        x = x.reshape(x.shape[0], -1) if x.dim() > 2 else x
        if x.dim() != 2 or x.shape[1] != self.layers[0]:
            raise ValueError(f'X has {tuple(x.shape)}: rows are samples with {self.layers[0]} features (layers[0])')
        if not torch.isfinite(x).all():
            raise ValueError('X contains NaN or infinite values')
        return x

    def _targets(self, y, n: int) -> torch.Tensor:
        y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y)
        if y.shape[0] != n:
            raise ValueError(f'y has {y.shape[0]} rows for {n} samples')
        classes = self.layers[-1]
        if y.dim() == 1:
            if y.is_floating_point() and not torch.equal(y, y.round()):
                raise ValueError('y must hold class labels (integers) or one target row per sample')
            if y.min() < 0 or y.max() >= classes:
                raise ValueError(f'labels must lie in 0..{classes - 1} (layers[-1] = {classes})')
            return torch.nn.functional.one_hot(y.long(), classes).to(self.dtype)
        if y.shape[1] != classes or not torch.isfinite(y).all():
            raise ValueError(f'targets must be finite rows of {classes} values (layers[-1])')
        return y.to(self.dtype)

    # -- training ------------------------------------------------------------------------------------------------
    def partial_fit(self, x, y) -> 'LPOM':
        """One LPOM step on one mini-batch: activation sweeps, then every layer's weights."""
        x = self._inputs(x)
        return self._step(x, self._targets(y, x.shape[0]))

    def _step(self, x: torch.Tensor, target: torch.Tensor) -> 'LPOM':
        xs = solver.forward(self.weights, x, self.acts)
        for _ in range(self.activation_iters):
            xs = solver.activation_sweep(xs, self.weights, self.acts, self.mu, self.loss, target, self.schedule)
        updated = solver.weight_sweep(self.weights, xs, self.acts, self.weight_iters, self.pinv_reg,
                                      self.parallel_weights)
        for weight, new in zip(self.weights, updated):
            weight.copy_(new)  # in place: whoever shares these tensors (a LightningModule's parameters) sees it
        return self

    def fit(self, x, y, epochs: int = 1, batch_size: int = 100, callback=None) -> 'LPOM':
        """Shuffled mini-batches for ``epochs`` epochs; ``callback(self, epoch)`` runs after each epoch."""
        x = self._inputs(x)
        target = self._targets(y, x.shape[0])
        for epoch in range(epochs):
            order = torch.randperm(x.shape[0], generator=self.generator)
            batches = order.split(batch_size)
            for batch in tqdm(batches, desc=f'LPOM epoch {epoch + 1}/{epochs}', disable=not self.progress,
                              leave=False):
                self._step(x[batch], target[batch])
            if callback is not None:
                callback(self, epoch)
        return self

    # -- inference -----------------------------------------------------------------------------------------------
    def decision_function(self, x) -> torch.Tensor:
        return solver.forward(self.weights, self._inputs(x), self.acts)[-1]

    def predict(self, x) -> np.ndarray:
        return self.decision_function(x).argmax(1).numpy()

    def predict_proba(self, x) -> np.ndarray:
        if self.loss != 'cross_entropy':
            raise AttributeError('predict_proba needs loss="cross_entropy" (softmax outputs); an mse model has none')
        return torch.softmax(self.decision_function(x), 1).numpy()

    def score(self, x, y) -> float:
        """Accuracy on labels ``y``."""
        return float((self.predict(x) == np.asarray(y)).mean())

    def objective(self, x, y) -> float:
        """The LPOM objective at the consistent activations of ``x`` (needs closed-form f and g)."""
        x = self._inputs(x)
        xs = solver.forward(self.weights, x, self.acts)
        return float(solver.objective(xs, self.weights, self.acts, self.mu, self.loss, self._targets(y, x.shape[0])))

    def to_torch(self) -> nn.Sequential:
        """The trained network as ``nn.Sequential`` of ``Linear`` and activation modules (inference is a forward)."""
        modules = []
        for weight, act in zip(self.weights, self.acts):
            linear = nn.Linear(weight.shape[1] - 1, weight.shape[0], dtype=self.dtype)
            with torch.no_grad():
                linear.weight.copy_(weight[:, :-1])
                linear.bias.copy_(weight[:, -1])
            modules += [linear, act.module()]
        return nn.Sequential(*modules)
