"""The LPOM block-coordinate solver over layer maps, in row form (samples are rows).

Layer ``i`` maps ``X[i]`` to ``X[i+1] = phi_i(L_i(X[i]))`` with ``L_i`` linear in ``X[i]`` and in its weight
``W[i]`` (``optnets.lpom.layers``: a dense layer is ``[X, 1] W^T``, a convolution its patches times ``W^T``).
``mu[i]`` weighs the terms of layer ``i`` (``mu[0]`` is unused). Only ``phi`` is evaluated, never its inverse or
derivative. Every function takes the layers, their weights and their activations as lists, so one solver trains
an MLP, a CNN and any mix of the two.
"""

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .activations import Activation
from .layers import Layer

Tensors = Sequence[torch.Tensor]
Layers = Sequence[Layer]
Activations = Sequence[Activation]
Mu = Sequence[float | None]
"""``mu[i]`` weighs layer ``i``'s terms; ``mu[0]`` is None (the input has none)."""
Ratios = dict[int, float] | None
"""``{i: the ratio update i uses}`` in place of its ``mu`` ratio (see ``contracting_ratios``)."""


def augment(x: torch.Tensor) -> torch.Tensor:
    """``[x, 1]``: a ones column, so that the last column of ``W`` is the bias."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], 1)


def forward(
    layers: Layers, weights: Tensors, x: torch.Tensor, acts: Sequence[Activation], refresh: bool = False
) -> list[torch.Tensor]:
    """Consistent activations ``X[i+1] = phi_i(L_i(X[i]))``: the initialisation, and the network's prediction;
    ``refresh`` first sets each normalization from the batch it sees."""
    xs = [x]
    for layer, weight, act in zip(layers, weights, acts):
        if refresh and getattr(layer, 'norm', False):
            layer.refresh(weight, xs[-1])
        xs.append(act.phi(layer.apply(weight, xs[-1])))
    return xs


# -- losses: value and gradient with respect to the output activations --------------------------------------------
def loss_value(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == 'mse':
        return ((out - target) ** 2).sum() / 2
    return -(target * F.log_softmax(out, 1)).sum()


def loss_gradient(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return out - target if kind == 'mse' else torch.softmax(out, 1) - target


LOSS_LIPSCHITZ = {'mse': 1.0, 'cross_entropy': 0.5}
"""The Lipschitz constant of each loss's gradient in the output activations (softmax's Jacobian: at most 1/2)."""


# -- activation updates --------------------------------------------------------------------------------------------
def hidden_update(
    i: int, layers: Layers, xs: Tensors, weights: Tensors, acts: Activations, mu: Mu, ratio: float | None = None
) -> torch.Tensor:
    """``X[i] <- phi(L[i-1](X[i-1]) - (mu[i+1]/mu[i]) L[i]^T (phi(L[i](X[i])) - X[i+1]))``; ``ratio`` replaces
    ``mu[i+1]/mu[i]`` when given (see ``contracting_ratios``)."""
    residual = acts[i].phi(layers[i].apply(weights[i], xs[i])) - xs[i + 1]
    pushed = layers[i].adjoint(weights[i], residual, xs[i])
    ratio = mu[i + 1] / mu[i] if ratio is None else ratio
    return acts[i - 1].phi(layers[i - 1].apply(weights[i - 1], xs[i - 1]) - ratio * pushed)


def output_update(
    layers: Layers,
    xs: Tensors,
    weights: Tensors,
    acts: Activations,
    mu: Mu,
    loss: str,
    target: torch.Tensor | None,
    step: float | None = None,
) -> torch.Tensor:
    """``X[n] <- phi(L[n-1](X[n-1]) - (1/mu[n]) dl/dX[n])``; ``step`` replaces ``1/mu[n]`` when given (see
    ``contracting_ratios``)."""
    n = len(weights)
    step = 1 / mu[n] if step is None else step
    z = layers[n - 1].apply(weights[n - 1], xs[n - 1])
    return acts[n - 1].phi(z - step * loss_gradient(loss, xs[n], target))


def update(
    i: int,
    layers: Layers,
    xs: Tensors,
    weights: Tensors,
    acts: Activations,
    mu: Mu,
    loss: str,
    target: torch.Tensor | None,
    ratios: Ratios = None,
) -> torch.Tensor:
    """The new ``X[i]``: the output update for the last layer, a hidden update otherwise."""
    if i == len(weights):
        return output_update(layers, xs, weights, acts, mu, loss, target, (ratios or {}).get(i))
    return hidden_update(i, layers, xs, weights, acts, mu, (ratios or {}).get(i))


def activation_updates(
    layers: Layers,
    xs: Tensors,
    weights: Tensors,
    acts: Activations,
    mu: Mu,
    loss: str,
    target: torch.Tensor | None,
    schedule: str = 'serial',
    ratios: Ratios = None,
) -> Iterator[tuple[int, Callable[[], torch.Tensor]]]:
    """One pass over the hidden and output activations, as ``(i, update)`` pairs to apply in turn
    (``xs[i] = update()``): in layer order with the newest values (``serial``); all from the values before the
    pass (``parallel``, Jacobi); or the odd ``i`` first, then the even ones (``odd-even``: an update reads only
    its neighbours, so those of one parity are independent, whatever order or process runs them). ``ratios[i]``
    replaces ``mu[i+1]/mu[i]`` in hidden update ``i``."""
    n = len(weights)
    new = lambda i: update(i, layers, xs, weights, acts, mu, loss, target, ratios)  # noqa: E731
    if schedule == 'parallel':
        values = {i: new(i) for i in range(1, n + 1)}
        yield from ((i, lambda i=i: values[i]) for i in values)
        return
    order = range(1, n + 1) if schedule == 'serial' else [*range(1, n + 1, 2), *range(2, n + 1, 2)]
    yield from ((i, lambda i=i: new(i)) for i in order)


def activation_sweep(
    layers: Layers,
    xs: Tensors,
    weights: Tensors,
    acts: Activations,
    mu: Mu,
    loss: str,
    target: torch.Tensor | None,
    schedule: str = 'serial',
    ratios: Ratios = None,
) -> list[torch.Tensor]:
    """One pass of ``activation_updates``; returns the new activations."""
    xs = list(xs)
    for i, new in activation_updates(layers, xs, weights, acts, mu, loss, target, schedule, ratios):
        xs[i] = new()
    return xs


# -- weight updates ------------------------------------------------------------------------------------------------
def pinv_solver(x: torch.Tensor, reg: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``R -> pinv([x, 1]) R`` by a regularised Cholesky solve on the smaller Gram matrix, never an inverse."""
    xa = augment(x)
    wide = xa.shape[0] <= xa.shape[1]
    gram = xa @ xa.T if wide else xa.T @ xa
    eps = reg * gram.diagonal().mean().clamp_min(1e-12)
    factor = torch.linalg.cholesky(gram + eps * torch.eye(gram.shape[0], dtype=x.dtype, device=x.device))
    if wide:
        return lambda r: xa.T @ torch.cholesky_solve(r, factor)
    return lambda r: torch.cholesky_solve(xa.T @ r, factor)


def weight_update(
    weight: torch.Tensor,
    x: torch.Tensor,
    target: torch.Tensor,
    act: Activation,
    iters: int = 1,
    reg: float = 1e-3,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Accelerated proximal gradient on ``1'g(W X + O)1 + 1/2 ||X' - W X - O||^2`` (``O`` a fixed offset, 0 when
    None): ``W <- Y - (1/beta)(phi(Y X + O) - X') pinv(X)`` with ``Y`` the Nesterov extrapolation, restarted
    whenever the step points uphill (O'Donoghue and Candes), so that the objective of the block never increases."""
    solve = pinv_solver(x, reg)
    xa = augment(x)

    def step(point):
        z = xa @ point.T
        return solve(act.phi(z if offset is None else z + offset) - target).T / act.lipschitz

    previous, t = weight, 1.0
    for _ in range(iters):
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        extrapolated = weight + ((t - 1) / t_next) * (weight - previous)
        direction = step(extrapolated)
        new = extrapolated - direction
        if t > 1 and torch.sum(direction * (new - weight)) > 0:  # uphill: restart from a plain step
            new, t_next = weight - step(weight), 1.0
        previous, weight, t = weight, new, t_next
    return weight


def weight_step(
    layer: Layer, weight: torch.Tensor, x: torch.Tensor, x_next: torch.Tensor, act: Activation, iters: int, reg: float
) -> torch.Tensor:
    """The layer's new weight: ``weight_update`` on its rows (a convolution's patches), its skip as the
    offset; a normalized layer is solved for its folded weight and mapped back."""
    folded = weight_update(layer.folded(weight), layer.rows(x), layer.to_rows(x_next), act, iters, reg, layer.offset(x))
    return layer.unfold_weight(folded)


def weight_sweep(
    layers: Layers, weights: Tensors, xs: Tensors, acts: Activations, iters: int, reg: float, parallel: bool = False
) -> list[torch.Tensor]:
    """Every layer's weights given the activations; the layers are independent, so ``parallel`` runs them at once."""
    jobs = [(layers[i], w, xs[i], xs[i + 1], acts[i], iters, reg) for i, w in enumerate(weights)]
    if not parallel:
        return [weight_step(*job) for job in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: weight_step(*job), jobs))


# -- the objective -------------------------------------------------------------------------------------------------
def objective(
    layers: Layers, xs: Tensors, weights: Tensors, acts: Activations, mu: Mu, loss: str, target: torch.Tensor | None
) -> torch.Tensor:
    """``l(X[n], L) + sum_i mu_i (1'f(X[i])1 + 1'g(L[i-1](X[i-1]))1 + 1/2 ||X[i] - L[i-1](X[i-1])||^2)``."""
    total = loss_value(loss, xs[-1], target)
    for i in range(1, len(xs)):
        act = acts[i - 1]
        if act.f is None or act.g is None:
            raise NotImplementedError(f'no closed-form f and g for activation {act.name!r}')
        z = layers[i - 1].apply(weights[i - 1], xs[i - 1])
        total = total + mu[i] * (act.f(xs[i]).sum() + act.g(z).sum() + ((xs[i] - z) ** 2).sum() / 2)
    return total


# -- contraction ---------------------------------------------------------------------------------------------------
NormSquared = Callable[[object, torch.Tensor], float]
"""``(layer, weight) -> ||L||_2^2``; by default the layer's own ``norm_squared`` (a dense layer's exact)."""


def factors(
    layers: Layers, weights: Tensors, acts: Activations, norm_squared: NormSquared | None = None
) -> list[float]:
    """``beta[i-1] beta[i] ||L[i]||_2^2`` of each hidden update: Theorem 2's rho without its ``mu`` ratio."""
    norm_squared = norm_squared or (lambda layer, weight: layer.norm_squared(weight))
    return [
        acts[i - 1].lipschitz * acts[i].lipschitz * norm_squared(layers[i], weights[i]) for i in range(1, len(weights))
    ]


def contraction(
    layers: Layers, weights: Tensors, acts: Activations, mu: Mu, norm_squared: NormSquared | None = None
) -> list[float]:
    """The paper's convergence factor rho of each hidden fixed-point update (Theorem 2), a contraction when
    below 1: (mu[i+1]/mu[i]) beta[i-1] beta[i] ||L[i]||_2^2."""
    return rhos(factors(layers, weights, acts, norm_squared), mu)


def rhos(factors: Sequence[float], mu: Mu) -> list[float]:
    """Theorem 2's rho of each hidden update, ``(mu[i+1]/mu[i]) * factors[i-1]``, from its factor without the
    ratio (as ``capped_ratios`` takes it)."""
    return [mu[i + 1] / mu[i] * factor for i, factor in enumerate(factors, start=1)]


def output_factor(acts: Activations, loss: str) -> float:
    """``beta[n-1] L``: the output update's rho without its ``1/mu[n]`` (``L``: the loss gradient's Lipschitz
    constant). The output update ``X[n] <- phi(Z - (1/mu[n]) dl/dX[n])`` contracts when ``beta[n-1] L / mu[n] < 1``,
    a condition of its own, which Theorem 2's rho of the hidden updates does not cover."""
    return acts[-1].lipschitz * LOSS_LIPSCHITZ[loss]


def output_rho(acts: Activations, mu: Mu, loss: str) -> float:
    """``beta[n-1] L / mu[n]``: the output update's contraction factor."""
    return output_factor(acts, loss) / mu[-1]


def contracting_ratios(
    layers: Layers,
    weights: Tensors,
    acts: Activations,
    mu: Mu,
    rho_max: float,
    loss: str,
    norm_squared: NormSquared | None = None,
) -> dict[int, float]:
    """``{i: min(mu[i+1]/mu[i], rho_max / (beta[i-1] beta[i] ||L[i]||_2^2))}`` for the hidden updates and
    ``{n: min(1/mu[n], rho_max / (beta[n-1] L))}`` for the output's: what each update uses to stay a contraction
    with factor at most ``rho_max``."""
    return capped_ratios(factors(layers, weights, acts, norm_squared), mu, rho_max, output_factor(acts, loss))


def capped_ratios(factors: Sequence[float], mu: Mu, rho_max: float, output: float) -> dict[int, float]:
    """``{i: min(mu[i+1]/mu[i], rho_max / factors[i-1])}`` for hidden updates ``i = 1, 2, ...``, where
    ``factors[i-1]`` is Theorem 2's rho of update ``i`` without its ratio (``beta[i-1] beta[i] ||L[i]||_2^2``), and
    ``{n: min(1/mu[n], rho_max / output)}`` for the output update, ``output`` its ``output_factor``."""
    ratios = {i: min(mu[i + 1] / mu[i], rho_max / max(factor, 1e-30)) for i, factor in enumerate(factors, start=1)}
    return ratios | {len(mu) - 1: min(1 / mu[-1], rho_max / output)}
