"""``LPOM`` and ``LPOMConv``: scikit-learn classifiers that train networks without backpropagation, one estimator
family over ``layers`` (the MLP is an architecture of dense layers)."""

import math
import warnings
from numbers import Integral, Real
from typing import Callable, Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from torch import nn
from tqdm.auto import tqdm

from . import solver
from .activations import Activation, get_activation
from .layers import parse, power_norm_squared

LOSSES = ('mse', 'cross_entropy')
SCHEDULES = ('serial', 'parallel', 'odd-even')
DEFAULT_MU = 10.0
"""The layer weight every LPOM entry point starts from (the estimator, the Lightning recipe, the benchmark)."""
INPUT_RMS_WARNING = 0.75
"""Training inputs with a larger root mean square (after ``scale_inputs``) get a warning: between Fashion-MNIST's
pixels (0.45) and the scales that fit worse in benchmarks/lpom_input_scale.py (standardized, 1.0; pixels times 3,
1.36)."""


def _peak(x: torch.Tensor) -> float:
    """The largest magnitude in ``x`` (0 for an empty ``x``), with no copy of it."""
    return float(torch.linalg.vector_norm(x, ord=math.inf)) if x.numel() else 0.0


class BaseLPOM(ClassifierMixin, BaseEstimator):
    """Lifted proximal operator machine over any architecture of LPOM layers: block coordinate descent on the
    LPOM objective (activations by fixed-point iteration, weights by accelerated proximal gradient), with
    scikit-learn's estimator contract (``clone``, pipelines, grid search). Subclasses say which layers
    (``_layers``): ``LPOM`` dense ones, ``LPOMConv`` a convolutional spec.

    The parameters every LPOM shares:
        activation: hidden activation: a name (relu, leaky_relu, sigmoid, tanh, elu, softplus, hardtanh), an
            ``Activation`` or any non-decreasing Lipschitz callable; ``activation_kwargs`` e.g. ``{'alpha': 0.1}``.
        out_activation: the output layer's activation (``identity`` by default: see the LPOM benchmark).
        mu: weight of each layer's terms, one number or one per layer (hidden layers and output); all positive.
        loss: ``cross_entropy`` (default) or ``mse`` (the paper's).
        schedule: activation updates in layer order (``serial``), all at once (``parallel``, Jacobi), or odd layers
            then even ones (``odd-even``: what ``optnets.lpom.distributed`` runs across processes).
        parallel_weights: update the layers' weights concurrently (they are independent given the activations).
        activation_iters, weight_iters: fixed-point sweeps and APG iterations per mini-batch.
        pinv_reg: relative ridge of the regularised pseudo-inverse solve.
        rho_max: when set, each hidden activation update is kept a contraction (Theorem 2's rho at most
            ``rho_max``) by lowering that update's ``mu[i+1]/mu[i]`` ratio where rho would exceed it, and so is the
            output update (its own factor ``beta[n-1] L / mu[n]``, ``L`` the loss gradient's Lipschitz constant:
            1 for mse, 1/2 for cross-entropy) by lowering its ``1/mu[n]``.
        scale_inputs: divide every input by the largest magnitude of a fresh fit's inputs (``input_scale_``), so
            that ``X`` and ``c X`` fit alike (a scale ``c`` weighs the layers' terms against the loss much as ``mu``
            times ``c**2`` would, and the defaults were set on pixels in [0, 1], which it leaves as they are).
            ``False`` takes inputs as given.
        max_iter: epochs over the data per ``fit``; ``batch_size``: samples per block-coordinate step.
        warm_start: ``fit`` continues from the current weights instead of starting over.
        random_state: initialisation and shuffling (an int makes ``fit`` reproducible).
        monitor: record, per step, Theorem 2's rho and the mini-batch objective before and after every block
            update in ``history_`` (costs a forward per block update); ``rho()`` gives rho at any time.

    Fitted attributes: ``layers_`` (the linear maps, ``layers``), ``weights_`` (one
    ``d_out x (fan_in + 1)`` tensor per layer, bias last, for inputs divided by ``input_scale_``), ``classes_``,
    ``n_features_in_``, ``n_iter_`` (epochs run), ``history_`` (with ``monitor``, per step: rho per hidden update,
    the output update's ``output_rho`` and the objective before and after each block update).
    """

    norm_squared = None
    """``(layer, weight) -> ||L||_2^2`` for Theorem 2's rho and ``rho_max``'s caps; None: each layer's own."""

    def _layers(self, n_features: int, n_outputs: int) -> list:
        """The layers for ``n_features`` inputs and ``n_outputs`` classes, the output layer included."""
        raise NotImplementedError

    # -- settings ------------------------------------------------------------------------------------------------
    def settings(self) -> tuple[list, list]:
        """Check every parameter (before any work) and return the activations and the per-layer mu."""
        layers = len(self._layers(1, 2))
        for name in ('activation_iters', 'weight_iters', 'max_iter', 'batch_size'):
            value = getattr(self, name)
            if not isinstance(value, Integral) or value < (0 if name == 'activation_iters' else 1):
                raise ValueError(
                    f'{name} must be an integer >= {0 if name == "activation_iters" else 1}, got {value!r}'
                )
        if not (isinstance(self.pinv_reg, Real) and self.pinv_reg > 0):
            raise ValueError(
                f'pinv_reg must be positive (the ridge that makes the solve well posed), got {self.pinv_reg!r}'
            )
        if self.rho_max is not None and not (isinstance(self.rho_max, Real) and 0 < self.rho_max < 1):
            raise ValueError(f'rho_max must lie in (0, 1) (a contraction), got {self.rho_max!r}')
        if self.loss not in LOSSES:
            raise ValueError(f'loss must be one of {LOSSES}, got {self.loss!r}')
        if self.schedule not in SCHEDULES:
            raise ValueError(f'schedule must be one of {SCHEDULES}, got {self.schedule!r}')
        number = isinstance(self.mu, Real)  # as scikit-learn's checks, a 0-d array is not a number
        try:
            mu = np.asarray(self.mu, dtype=np.float64) if number or isinstance(self.mu, (list, tuple)) else None
        except (TypeError, ValueError):
            mu = None
        if mu is None or mu.ndim != (0 if number else 1):
            raise ValueError(
                f'mu must be a positive number or a list of one per layer after the input ({layers}), got {self.mu!r}'
            )
        mu = [float(mu)] * layers if number else mu.tolist()
        if len(mu) != layers:
            raise ValueError(f'mu needs one value per layer after the input ({layers}), got {len(mu)}')
        if not all(m > 0 and math.isfinite(m) for m in mu):
            raise ValueError(f'mu must be positive (it weighs convex terms), got {mu}')
        act = get_activation(self.activation, **(self.activation_kwargs or {}))
        return [act] * (layers - 1) + [get_activation(self.out_activation)], [None, *mu]

    # -- data ----------------------------------------------------------------------------------------------------
    def _inputs(self, x, reset: bool, y=None, training: bool = False):
        """``X`` as a float32 tensor, as given; in training divided by the input scale (a fresh fit's own with
        ``reset``), and returned with ``y``, checked against it, and that scale."""
        if training and y is None:
            raise ValueError(f'{type(self).__name__} requires y to be passed, but the target y is None')
        x, y = (
            validate_data(self, x, y, reset=reset, dtype=np.float32)
            if training
            else (validate_data(self, x, reset=reset, dtype=np.float32), None)
        )
        x = torch.from_numpy(np.ascontiguousarray(x))
        if not training:
            return x
        scale = self._scale_of(x) if reset else self.input_scale_
        x = x / scale if scale != 1.0 else x
        limit = math.sqrt(torch.finfo(torch.float32).max / (x.shape[1] + 1) / max(self.batch_size, 1)) / 1e3
        if _peak(x) > limit:  # the weight update's Gram matrix would overflow float32
            raise ValueError(
                f'X has values up to {_peak(x):.3g}: the least-squares weight update squares '
                f'them and would overflow float32 (above {limit:.3g} here); scale the features, e.g. '
                'with scale_inputs=True'
            )
        size = float(torch.linalg.vector_norm(x)) / math.sqrt(x.numel()) if reset and x.numel() else 0.0
        if size > INPUT_RMS_WARNING:  # measured on a fresh fit's inputs only, never on predict
            warnings.warn(
                f'X has a root mean square of {size:.2f}: LPOM is not invariant to the scale of its inputs, and its '
                'defaults were set on pixels in [0, 1] (0.45 on Fashion-MNIST); larger inputs fit less well there '
                '(docs/lpom.md, "Inputs")',
                UserWarning,
                stacklevel=3,
            )
        return x, y, scale

    def _scale_of(self, x: torch.Tensor) -> float:
        """What a fresh fit divides its inputs by: their largest magnitude with ``scale_inputs``, else 1."""
        peak = _peak(x)
        return peak if self.scale_inputs and peak > 0 else 1.0

    def _targets(self, y) -> torch.Tensor:
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f'y has labels {unseen[:5].tolist()} that are not in classes_ {self.classes_.tolist()}')
        index = torch.from_numpy(np.searchsorted(self.classes_, y))
        return nn.functional.one_hot(index, max(len(self.classes_), 2)).float()  # as wide as the output layer

    def initialize(self, n_features: int, classes: ArrayLike, input_scale: float = 1.0) -> 'BaseLPOM':
        """Fresh layers and weights for ``n_features`` inputs and ``classes`` (Glorot uniform, zero bias), inputs
        divided by ``input_scale``; nothing is set when they cannot be made."""
        self.settings()
        classes = self._classes(classes)
        rng = check_random_state(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        layers = self._layers(n_features, len(classes))
        try:
            weights = [layer.init(generator) for layer in layers]
        except (RuntimeError, MemoryError) as error:  # torch reports a failed allocation as a RuntimeError
            sizes = [
                (getattr(layer, 'channels_out', None) or layer.features_out, layer.fan_in() + 1) for layer in layers
            ]
            raise ValueError(f'weights of shapes {sizes} cannot be allocated ({str(error).splitlines()[0]})') from None
        self.classes_, self.generator_, self.layers_, self.weights_ = classes, generator, layers, weights
        self.input_scale_, self.n_iter_, self.history_ = float(input_scale), 0, []
        return self

    # -- training ------------------------------------------------------------------------------------------------
    def minibatches(self, X: ArrayLike, y: ArrayLike) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, target)`` tensors of ``max_iter`` epochs of shuffled mini-batches, from fresh weights unless
        ``warm_start``: what ``fit`` steps through, and what a solver of one's own (``LayerParallelLPOM``) can."""
        fresh = not (self.warm_start and hasattr(self, 'weights_'))
        if fresh and y is not None:  # refused before any state changes
            self._classes(y)
        x, y, scale = self._inputs(X, fresh, y, training=True)
        check_classification_targets(y)
        if fresh:
            self.initialize(self.n_features_in_, unique_labels(y), scale)
        target = self._targets(y)
        for epoch in range(self.max_iter):
            batches = torch.randperm(x.shape[0], generator=self.generator_).split(self.batch_size)
            for batch in tqdm(
                batches, desc=f'LPOM epoch {epoch + 1}/{self.max_iter}', disable=not self.progress, leave=False
            ):
                yield x[batch], target[batch]
            self.n_iter_ += 1

    def fit(self, X: ArrayLike, y: ArrayLike) -> 'BaseLPOM':
        """``max_iter`` epochs of shuffled mini-batches, from fresh weights unless ``warm_start``."""
        acts, mu = self.settings()
        for x, target in self.minibatches(X, y):
            self._step(x, target, acts, mu)
        return self

    def partial_fit(self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None) -> 'BaseLPOM':
        """One block-coordinate step on one mini-batch; the first call needs ``classes`` (all labels)."""
        first = not hasattr(self, 'weights_')
        if first and classes is None:
            raise ValueError('the first partial_fit needs classes= (every label the data can hold)')
        acts, mu = self.settings()
        known = self._classes(classes) if first else self.classes_
        unseen = np.setdiff1d(column_or_1d(y), known) if y is not None else []
        if len(unseen):  # refused before any state changes
            raise ValueError(
                f'y has labels {unseen[:5].tolist()} that are not in classes{"" if first else "_"} {known.tolist()}'
            )
        x, y, scale = self._inputs(X, first, y, training=True)
        if first:
            self.initialize(self.n_features_in_, known, scale)
        return self._step(x, self._targets(y), acts, mu)

    def _classes(self, labels) -> np.ndarray:
        """The sorted classes of ``labels``, checked as scikit-learn's classifiers check them (2 at least)."""
        labels = column_or_1d(labels, warn=True)
        check_classification_targets(labels)
        classes = unique_labels(labels)
        if len(classes) < 2:
            raise ValueError(
                f'{type(self).__name__} needs samples of at least 2 classes; got {len(classes)} class: '
                f'{classes.tolist()}'
            )
        return classes

    def _step(self, x: torch.Tensor, target: torch.Tensor, acts, mu) -> 'BaseLPOM':
        """Activation sweeps, then every layer's weights; with ``monitor`` records rho and the objective."""
        layers, weights = self.layers_, self.weights_
        watch = self.monitor and all(a.f is not None and a.g is not None for a in acts)
        value = (lambda: float(solver.objective(layers, xs, weights, acts, mu, self.loss, target))) if watch else None
        xs = solver.forward(layers, weights, x, acts, refresh=True)  # the maps this step uses, BN's from x
        factors = solver.factors(layers, weights, acts, self.norm_squared) if self.monitor or self.rho_max else None
        record = dict(
            rho=solver.rhos(factors, mu) if self.monitor else None,
            output_rho=solver.output_rho(acts, mu, self.loss),
            objective=[],
        )
        ratios = (
            solver.capped_ratios(factors, mu, self.rho_max, solver.output_factor(acts, self.loss))
            if self.rho_max
            else None
        )
        for _ in range(self.activation_iters):
            for i, new in solver.activation_updates(
                layers, xs, weights, acts, mu, self.loss, target, self.schedule, ratios
            ):
                before = value() if watch else None
                xs[i] = new()
                if watch:
                    record['objective'].append((f'X[{i}]', before, value()))
        updated = solver.weight_sweep(
            layers, weights, xs, acts, self.weight_iters, self.pinv_reg, self.parallel_weights
        )
        for i, (weight, new) in enumerate(zip(weights, updated)):
            before = value() if watch else None
            weight.copy_(new)  # in place: whoever shares these tensors (a LightningModule's parameters) sees it
            if watch:
                record['objective'].append((f'W[{i}]', before, value()))
        if self.monitor:
            self.history_.append(record)
        return self

    def rho(self) -> list[float]:
        """Theorem 2's contraction factor of each hidden activation update at the current weights (below 1: the
        fixed-point update contracts and never raises the objective), ``(mu[i+1]/mu[i]) beta[i-1] beta[i]
        ||L[i]||_2^2``: a dense layer's norm exact, a convolution's by power iteration."""
        check_is_fitted(self)
        acts, mu = self.settings()
        return solver.contraction(self.layers_, self.weights_, acts, mu, self.norm_squared)

    # -- inference -----------------------------------------------------------------------------------------------
    def _inference(self):
        """Normalizations from their running averages."""
        for layer in self.layers_:
            if getattr(layer, 'norm', False):
                layer.use_running()

    def _scores(self, X) -> torch.Tensor:
        check_is_fitted(self)
        return self.forward(self._inputs(X, reset=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer's values for a float tensor of samples, as a tensor (torch's side: no data checks)."""
        check_is_fitted(self)
        self._inference()
        x = x.reshape(-1, *self.layers_[0].in_shape) / self.input_scale_
        return solver.forward(self.layers_, self.weights_, x, self.settings()[0])[-1]

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """The output layer's values; for two classes, one column as scikit-learn's binary convention."""
        scores = self._scores(X).numpy()
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X: ArrayLike) -> np.ndarray:
        scores = self._scores(X)
        return self.classes_[scores[:, : len(self.classes_)].argmax(1).numpy()]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        if self.loss != 'cross_entropy':
            raise AttributeError('predict_proba needs loss="cross_entropy" (softmax outputs); an mse model has none')
        return torch.softmax(self._scores(X)[:, : len(self.classes_)], 1).numpy()

    def objective(self, X: ArrayLike, y: ArrayLike) -> float:
        """The LPOM objective at the consistent activations of ``X`` (needs closed-form f and g)."""
        check_is_fitted(self)
        acts, mu = self.settings()
        xs = solver.forward(self.layers_, self.weights_, self._inputs(X, reset=False) / self.input_scale_, acts)
        return float(solver.objective(self.layers_, xs, self.weights_, acts, mu, self.loss, self._targets(y)))

    def to_torch(self) -> nn.Sequential:
        """The trained network as ``nn.Sequential`` of PyTorch layers and activation modules (inference is a
        forward; normalizations from their running averages, folded into the convolutions; the input scale
        folded into the first layer)."""
        check_is_fitted(self)
        self._inference()
        first = self.weights_[0]
        weights = [torch.cat([first[:, :-1] / self.input_scale_, first[:, -1:]], 1), *self.weights_[1:]]
        modules = []
        for layer, weight, act in zip(self.layers_, weights, self.settings()[0]):
            modules += [layer.module(weight), act.module()]
        return nn.Sequential(*modules)


class LPOM(BaseLPOM):
    """LPOM for an MLP ``n_features -> hidden_layer_sizes... -> n_classes``, with the parameters of
    ``BaseLPOM`` (``hidden_layer_sizes``: the hidden widths; the input and output widths come from the
    data)."""

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] | int = (300,),
        activation: str | Activation | Callable = 'relu',
        out_activation: str | Activation | Callable = 'identity',
        mu: float | Sequence[float] = DEFAULT_MU,
        loss: str = 'cross_entropy',
        schedule: str = 'serial',
        parallel_weights: bool = False,
        activation_iters: int = 5,
        weight_iters: int = 3,
        pinv_reg: float = 1e-3,
        activation_kwargs: dict | None = None,
        rho_max: float | None = None,
        scale_inputs: bool = True,
        max_iter: int = 1,
        batch_size: int = 100,
        warm_start: bool = False,
        random_state: int | np.random.RandomState | None = None,
        monitor: bool = False,
        progress: bool = False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.out_activation = out_activation
        self.mu = mu
        self.loss = loss
        self.schedule = schedule
        self.parallel_weights = parallel_weights
        self.activation_iters = activation_iters
        self.weight_iters = weight_iters
        self.pinv_reg = pinv_reg
        self.activation_kwargs = activation_kwargs
        self.rho_max = rho_max
        self.scale_inputs = scale_inputs
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.warm_start = warm_start
        self.random_state = random_state
        self.monitor = monitor
        self.progress = progress

    def _layers(self, n_features: int, n_outputs: int) -> list:
        hidden = list(np.atleast_1d(self.hidden_layer_sizes))
        if not all(isinstance(w, Integral) and w >= 1 for w in hidden):
            raise ValueError(f'hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}')
        return parse([f'fc{width}' for width in hidden], (n_features,), n_outputs)


class LPOMConv(BaseLPOM):
    """LPOM for a convolutional network, with the parameters of ``BaseLPOM``. ``X`` holds images
    ``(n, *input_shape)`` or their flattened rows; ``architecture`` is a layer spec of
    ``layers`` such as ``('conv32x5', 'avg2', 'fc128')``, the output layer added. Every
    layer's ``||L||_2^2``, dense ones included, is estimated by power iteration, as the CNN benchmarks measured it."""

    norm_squared = staticmethod(power_norm_squared)

    def __init__(
        self,
        architecture: Sequence[str] = ('conv32x5', 'avg2', 'conv64x5', 'avg2'),
        input_shape: tuple[int, ...] = (1, 28, 28),
        activation: str | Activation | Callable = 'relu',
        out_activation: str | Activation | Callable = 'identity',
        mu: float | Sequence[float] = DEFAULT_MU,
        loss: str = 'cross_entropy',
        schedule: str = 'serial',
        parallel_weights: bool = False,
        activation_iters: int = 5,
        weight_iters: int = 3,
        pinv_reg: float = 1e-3,
        activation_kwargs: dict | None = None,
        rho_max: float | None = None,
        scale_inputs: bool = True,
        max_iter: int = 1,
        batch_size: int = 100,
        warm_start: bool = False,
        random_state: int | np.random.RandomState | None = None,
        monitor: bool = False,
        progress: bool = False,
    ):
        self.architecture = architecture
        self.input_shape = input_shape
        self.activation = activation
        self.out_activation = out_activation
        self.mu = mu
        self.loss = loss
        self.schedule = schedule
        self.parallel_weights = parallel_weights
        self.activation_iters = activation_iters
        self.weight_iters = weight_iters
        self.pinv_reg = pinv_reg
        self.activation_kwargs = activation_kwargs
        self.rho_max = rho_max
        self.scale_inputs = scale_inputs
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.warm_start = warm_start
        self.random_state = random_state
        self.monitor = monitor
        self.progress = progress

    def _layers(self, n_features: int, n_outputs: int) -> list:
        return parse(self.architecture, self.input_shape, n_outputs)

    def _inputs(self, x, reset: bool, y=None, training: bool = False):
        """Images or their rows, checked as rows, returned as images."""
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
        return (images, *checked[1:]) if training else images
