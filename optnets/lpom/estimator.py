"""``LPOM``: a scikit-learn classifier that trains an MLP without backpropagation."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from torch import nn
from tqdm.auto import tqdm

from . import solver
from .activations import get_activation

LOSSES = ('mse', 'cross_entropy')
SCHEDULES = ('serial', 'parallel', 'odd-even')
DEFAULT_MU = 10.0
"""The layer weight every LPOM entry point starts from (the estimator, the Lightning recipe, the benchmark)."""


def glorot(d_in: int, d_out: int, fan_in: int, fan_out: int, generator) -> torch.Tensor:
    """A ``d_out x (d_in + 1)`` weight: Glorot uniform over ``fan_in + fan_out``, zero bias (last column)."""
    bound = math.sqrt(6 / (fan_in + fan_out))
    return torch.cat([(torch.rand(d_out, d_in, generator=generator) * 2 - 1) * bound, torch.zeros(d_out, 1)], 1)


class LPOM(ClassifierMixin, BaseEstimator):
    """Lifted proximal operator machine: an MLP ``n_features -> hidden_layer_sizes... -> n_classes`` trained by
    block coordinate descent on the LPOM objective (activations by fixed-point iteration, weights by accelerated
    proximal gradient), with scikit-learn's estimator contract (``clone``, pipelines, grid search).

    Args:
        hidden_layer_sizes: the hidden widths (the input and output widths come from the data).
        activation: hidden activation: a name (relu, leaky_relu, sigmoid, tanh, elu, softplus, hardtanh), an
            ``Activation`` or any non-decreasing Lipschitz callable; ``activation_kwargs`` e.g. ``{'alpha': 0.1}``.
        out_activation: the output layer's activation (``identity`` by default: see the README's measurement).
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
        max_iter: epochs over the data per ``fit``; ``batch_size``: samples per block-coordinate step.
        warm_start: ``fit`` continues from the current weights instead of starting over.
        random_state: initialisation and shuffling (an int makes ``fit`` reproducible).
        monitor: record, per step, Theorem 2's rho and the mini-batch objective before and after every block
            update in ``history_`` (costs a forward per block update); ``rho()`` gives rho at any time.

    Fitted attributes: ``weights_`` (one ``d_out x (d_in + 1)`` tensor per layer, bias last), ``classes_``,
    ``n_features_in_``, ``n_iter_`` (epochs run), ``history_`` (with ``monitor``, per step: rho per hidden update,
    the output update's ``output_rho``
    and the objective before and after each block update).
    """

    def __init__(
        self,
        hidden_layer_sizes=(300,),
        activation='relu',
        out_activation='identity',
        mu=DEFAULT_MU,
        loss='cross_entropy',
        schedule='serial',
        parallel_weights=False,
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
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.warm_start = warm_start
        self.random_state = random_state
        self.monitor = monitor
        self.progress = progress

    # -- settings ------------------------------------------------------------------------------------------------
    def _hidden(self) -> list[int]:
        hidden = list(np.atleast_1d(self.hidden_layer_sizes))
        if not all(isinstance(w, Integral) and w >= 1 for w in hidden):
            raise ValueError(f'hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}')
        return hidden

    def _layer_count(self) -> int:
        return len(self._hidden()) + 1

    def _settings(self):
        """Check every parameter (before any work) and return the activations and the per-layer mu."""
        layers = self._layer_count()
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
        """``X`` as a float32 tensor; in training also ``y``, checked against it."""
        if training and y is None:
            raise ValueError(f'{type(self).__name__} requires y to be passed, but the target y is None')
        x, y = (
            validate_data(self, x, y, reset=reset, dtype=np.float32)
            if training
            else (validate_data(self, x, reset=reset, dtype=np.float32), None)
        )
        limit = math.sqrt(torch.finfo(torch.float32).max / (x.shape[1] + 1) / max(self.batch_size, 1)) / 1e3
        if x.size and np.abs(x).max() > limit:  # the weight update's Gram matrix would overflow float32
            raise ValueError(
                f'X has values up to {np.abs(x).max():.3g}: the least-squares weight update squares '
                f'them and would overflow float32 (above {limit:.3g} here); scale the features, e.g. '
                'with sklearn.preprocessing.StandardScaler'
            )
        x = torch.from_numpy(np.ascontiguousarray(x))
        return (x, y) if training else x

    def _targets(self, y) -> torch.Tensor:
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f'y has labels {unseen[:5].tolist()} that are not in classes_ {self.classes_.tolist()}')
        index = torch.from_numpy(np.searchsorted(self.classes_, y))
        return nn.functional.one_hot(index, max(len(self.classes_), 2)).float()  # as wide as the output layer

    def _initialize(self, n_features: int, classes):
        """Fresh weights for ``n_features`` inputs and ``classes`` (Glorot uniform, zero bias); nothing is set
        when they cannot be made."""
        self._settings()
        classes = self._classes(classes)
        rng = check_random_state(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        shapes = self._weight_shapes(n_features, len(classes))
        try:
            weights = [glorot(d_in, d_out, fan_in, fan_out, generator) for d_in, d_out, fan_in, fan_out in shapes]
        except (RuntimeError, MemoryError) as error:  # torch reports a failed allocation as a RuntimeError
            sizes = [(d_out, d_in + 1) for d_in, d_out, *_ in shapes]
            raise ValueError(f'weights of shapes {sizes} cannot be allocated ({str(error).splitlines()[0]})') from None
        self.classes_, self.generator_, self.weights_ = classes, generator, weights
        self.n_iter_, self.history_ = 0, []
        return self

    def _weight_shapes(self, n_features: int, n_outputs: int) -> list[tuple]:
        """``(d_in, d_out, fan_in, fan_out)`` of each layer's weight (``d_out x (d_in + 1)``, bias last)."""
        widths = [n_features, *self._hidden(), n_outputs]
        return [(d_in, d_out, d_in, d_out) for d_in, d_out in zip(widths, widths[1:])]

    # -- training ------------------------------------------------------------------------------------------------
    def fit(self, X, y) -> 'LPOM':
        """``max_iter`` epochs of shuffled mini-batches, from fresh weights unless ``warm_start``."""
        acts, mu = self._settings()
        fresh = not (self.warm_start and hasattr(self, 'weights_'))
        if fresh and y is not None:  # refused before any state changes
            self._classes(y)
        x, y = self._inputs(X, fresh, y, training=True)
        check_classification_targets(y)
        if fresh:
            self._initialize(self.n_features_in_, unique_labels(y))
        target = self._targets(y)
        for epoch in range(self.max_iter):
            batches = torch.randperm(x.shape[0], generator=self.generator_).split(self.batch_size)
            for batch in tqdm(
                batches, desc=f'LPOM epoch {epoch + 1}/{self.max_iter}', disable=not self.progress, leave=False
            ):
                self._step(x[batch], target[batch], acts, mu)
            self.n_iter_ += 1
        return self

    def partial_fit(self, X, y, classes=None) -> 'LPOM':
        """One block-coordinate step on one mini-batch; the first call needs ``classes`` (all labels)."""
        first = not hasattr(self, 'weights_')
        if first and classes is None:
            raise ValueError('the first partial_fit needs classes= (every label the data can hold)')
        acts, mu = self._settings()
        known = self._classes(classes) if first else self.classes_
        unseen = np.setdiff1d(column_or_1d(y), known) if y is not None else []
        if len(unseen):  # refused before any state changes
            raise ValueError(
                f'y has labels {unseen[:5].tolist()} that are not in classes{"" if first else "_"} {known.tolist()}'
            )
        x, y = self._inputs(X, first, y, training=True)
        if first:
            self._initialize(self.n_features_in_, known)
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

    def _step(self, x: torch.Tensor, target: torch.Tensor, acts, mu) -> 'LPOM':
        """Activation sweeps, then every layer's weights; with ``monitor`` records rho and the objective."""
        weights = self.weights_
        ratios = solver.contracting_ratios(weights, acts, mu, self.rho_max, self.loss) if self.rho_max else None
        record = dict(
            rho=solver.contraction(weights, acts, mu) if self.monitor else None,
            output_rho=solver.output_rho(acts, mu, self.loss),
            objective=[],
        )
        watch = self.monitor and all(a.f is not None and a.g is not None for a in acts)
        value = (lambda xs, ws: float(solver.objective(xs, ws, acts, mu, self.loss, target))) if watch else None
        xs = solver.forward(weights, x, acts)
        for _ in range(self.activation_iters):
            for i, update in solver.activation_updates(xs, weights, acts, mu, self.loss, target, self.schedule, ratios):
                before = value(xs, weights) if watch else None
                xs[i] = update()
                if watch:
                    record['objective'].append((f'X[{i}]', before, value(xs, weights)))
        updated = solver.weight_sweep(weights, xs, acts, self.weight_iters, self.pinv_reg, self.parallel_weights)
        for i, (weight, new) in enumerate(zip(weights, updated)):
            before = value(xs, weights) if watch else None
            weight.copy_(new)  # in place: whoever shares these tensors (a LightningModule's parameters) sees it
            if watch:
                record['objective'].append((f'W[{i}]', before, value(xs, weights)))
        if self.monitor:
            self.history_.append(record)
        return self

    def rho(self) -> list[float]:
        """Theorem 2's contraction factor of each hidden activation update at the current weights (below 1: the
        fixed-point update contracts and never raises the objective)."""
        check_is_fitted(self)
        acts, mu = self._settings()
        return solver.contraction(self.weights_, acts, mu)

    # -- inference -----------------------------------------------------------------------------------------------
    def _scores(self, X) -> torch.Tensor:
        check_is_fitted(self)
        return self.forward(self._inputs(X, reset=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer's values for a float tensor of samples, as a tensor (torch's side: no data checks)."""
        check_is_fitted(self)
        return solver.forward(self.weights_, x, self._settings()[0])[-1]

    def decision_function(self, X) -> np.ndarray:
        """The output layer's values; for two classes, one column as scikit-learn's binary convention."""
        scores = self._scores(X).numpy()
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X) -> np.ndarray:
        scores = self._scores(X)
        return self.classes_[scores[:, : len(self.classes_)].argmax(1).numpy()]

    def predict_proba(self, X) -> np.ndarray:
        if self.loss != 'cross_entropy':
            raise AttributeError('predict_proba needs loss="cross_entropy" (softmax outputs); an mse model has none')
        return torch.softmax(self._scores(X)[:, : len(self.classes_)], 1).numpy()

    def objective(self, X, y) -> float:
        """The LPOM objective at the consistent activations of ``X`` (needs closed-form f and g)."""
        check_is_fitted(self)
        acts, mu = self._settings()
        xs = solver.forward(self.weights_, self._inputs(X, reset=False), acts)
        return float(solver.objective(xs, self.weights_, acts, mu, self.loss, self._targets(y)))

    def to_torch(self) -> nn.Sequential:
        """The trained network as ``nn.Sequential`` of ``Linear`` and activation modules (inference is a forward)."""
        check_is_fitted(self)
        modules = []
        for weight, act in zip(self.weights_, self._settings()[0]):
            linear = nn.Linear(weight.shape[1] - 1, weight.shape[0])
            with torch.no_grad():
                linear.weight.copy_(weight[:, :-1])
                linear.bias.copy_(weight[:, -1])
            modules += [linear, act.module()]
        return nn.Sequential(*modules)
