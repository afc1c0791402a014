"""LPOM's formulas against their definitions, each written so that a wrong formula fails it (benchmarks/mutations.py
checks that: it mutates the solver and expects a test here, or in the other LPOM tests, to fail).

- a hidden update's fixed point is the minimiser of the LPOM objective over that block, with unequal mu's;
- one weight step is the exact minimiser of the block's quadratic majoriser;
- the accelerated weight update never rises from one iterate to the next (its restart's promise);
- Theorem 2's rho is its definition, on a case computed by hand."""

import math

import pytest
import torch

from optnets.lpom import get_activation, solver
from optnets.lpom.layers import Conv, parse, power_norm_squared, preactivation

from tests.test_lpom import dense, network


def block_objective(i, xs, weights, acts, mu):
    """The terms of the LPOM objective that hold ``X[i]`` (a hidden layer): layer i's and layer i+1's."""

    def layer(k):
        z = preactivation(weights[k - 1], xs[k - 1])
        return mu[k] * (acts[k - 1].f(xs[k]).sum() + acts[k - 1].g(z).sum() + ((xs[k] - z) ** 2).sum() / 2)

    return layer(i) + layer(i + 1)


@pytest.mark.parametrize('mu', [[None, 1.0, 0.25, 1.0], [None, 4.0, 1.0, 1.0]])
@pytest.mark.parametrize('activation', ['sigmoid', 'tanh'])
def test_the_hidden_updates_fixed_point_minimises_its_block_with_unequal_mus(activation, mu):
    weights, acts, _, x, target = network(activation, scale=0.5)
    xs = solver.forward(dense(weights), weights, x, acts)
    xs[2] = xs[2] + 0.3 * torch.randn(xs[2].shape, generator=torch.Generator().manual_seed(5), dtype=xs[2].dtype)
    xs[2] = xs[2].clamp(-0.9, 0.9) if activation == 'tanh' else xs[2].clamp(0.05, 0.95)  # inside phi's range
    for _ in range(300):  # the fixed-point iteration (a contraction here: rho well below 1)
        xs[1] = solver.hidden_update(1, dense(weights), xs, weights, acts, mu)
    assert solver.contraction(dense(weights), weights, acts, mu)[0] < 0.5  # update 1's rho
    point = xs[1].clone().requires_grad_()
    value = block_objective(1, [xs[0], point, *xs[2:]], weights, acts, mu)
    (gradient,) = torch.autograd.grad(value, point)
    assert gradient.abs().max() < 1e-8  # stationary, and the block is convex: its minimiser


@pytest.mark.parametrize('activation', ['sigmoid', 'relu', 'tanh'])
def test_one_weight_step_is_the_exact_step_of_the_quadratic_majoriser(activation):
    """``argmin_V <grad h(W), V - W> + beta/2 ||(V - W) [X, 1]^T||^2``, solved here by least squares."""
    act = get_activation(activation)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    outputs = act.phi(2 * torch.randn(20, 4, generator=gen, dtype=torch.float64))
    w = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    xa = solver.augment(inputs)
    residual = act.phi(xa @ w.T) - outputs  # h's gradient is residual^T [X, 1]
    correction = torch.linalg.lstsq(xa, residual).solution.T  # [X, 1] C^T = residual, least squares
    assert correction.abs().max() > 0.1  # a real step
    expected = w - correction / act.lipschitz
    got = solver.weight_update(w, inputs, outputs, act, iters=1, reg=1e-13)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-8)


def block_value(w, x, target, act):
    """``1'g([X, 1] W^T)1 + 1/2 ||X' - [X, 1] W^T||^2``: what the weight update minimises."""
    z = solver.augment(x) @ w.T
    return float(act.g(z).sum() + ((target - z) ** 2).sum() / 2)


@pytest.mark.parametrize('activation', ['sigmoid', 'relu'])
def test_the_accelerated_weight_update_never_rises_between_consecutive_iterates(activation):
    act = get_activation(activation)
    rises = []
    for seed in range(60):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(20, 5, generator=gen, dtype=torch.float64)
        target = act.phi(torch.randn(20, 4, generator=gen, dtype=torch.float64) * 2)
        w = torch.randn(4, 6, generator=gen, dtype=torch.float64)
        values = [block_value(solver.weight_update(w, x, target, act, iters=k), x, target, act) for k in range(12)]
        rises += [(seed, k) for k in range(1, 12) if values[k] > values[k - 1] + 1e-10 * abs(values[k - 1])]
    assert rises == []


def test_theorem_2s_rho_is_its_definition_on_a_case_computed_by_hand():
    """Layers sigmoid (beta 1/4) then leaky ReLU with slope 2 (beta 2): rho of the one hidden update is
    (mu[2]/mu[1]) * beta[0] * beta[1] * ||W[1]||_2^2, with W[1]'s largest singular value 3 (its bias left out)."""
    acts = [get_activation('sigmoid'), get_activation('leaky_relu', alpha=2.0)]  # betas 1/4 and 2: each one counts
    w0 = torch.randn(3, 5, dtype=torch.float64)
    w1 = torch.tensor([[3.0, 0.0, 0.0, 7.0], [0.0, 2.0, 0.0, -7.0]], dtype=torch.float64)  # last column: the bias
    mu = [None, 2.0, 0.5]
    assert solver.contraction(dense([w0, w1]), [w0, w1], acts, mu) == pytest.approx([(0.5 / 2.0) * 0.25 * 2.0 * 9.0])
    layers = parse(('fc3',), (4,), 2)  # the same layers, with the CNN's power iteration for the norm
    power = lambda layer, weight: power_norm_squared(layer, weight, iters=100)  # noqa: E731
    assert solver.factors(layers, [w0, w1], acts, power) == pytest.approx([0.25 * 2.0 * 9.0], rel=1e-6)


def test_the_output_updates_fixed_point_minimises_the_loss_block():
    """``X[n] = phi(W X[n-1] - (1/mu[n]) dl/dX[n])`` at its fixed point: the loss and layer n's terms are stationary."""
    weights, acts, mu, x, target = network('sigmoid')
    xs = solver.forward(dense(weights), weights, x, acts)
    mu = [None, 1.0, 2.0, 3.0]
    for _ in range(200):
        xs[3] = solver.output_update(dense(weights), xs, weights, acts, mu, 'cross_entropy', target)
    point = xs[3].clone().requires_grad_()
    z = preactivation(weights[2], xs[2])
    value = solver.loss_value('cross_entropy', point, target) + mu[3] * (
        acts[2].f(point).sum() + acts[2].g(z).sum() + ((point - z) ** 2).sum() / 2
    )
    (gradient,) = torch.autograd.grad(value, point)
    assert gradient.abs().max() < 1e-9 and math.isfinite(value.item())


def output_changes(step, steps=8):
    """How much each repeated output update moves X[n] (mse, mu[n] = 0.3, identity output: beta L / mu = 3.3)."""
    weights, acts, _, x, target = network('relu', loss='mse')
    mu = [None, 1.0, 1.0, 0.3]
    xs = solver.forward(dense(weights), weights, x, acts)
    ratios = solver.contracting_ratios(dense(weights), weights, acts, mu, 0.9, 'mse') if step == 'capped' else None
    changes = []
    for _ in range(steps):
        new = solver.update(3, dense(weights), xs, weights, acts, mu, 'mse', target, ratios)
        changes.append(float((new - xs[3]).norm()))
        xs[3] = new
    return changes, solver.output_rho(acts, mu, 'mse')


def test_the_output_update_has_its_own_stability_condition_and_rho_max_caps_it():
    changes, rho = output_changes('plain')
    assert rho == pytest.approx(1.0 * 1.0 / 0.3)  # beta (identity) * L (mse) / mu[n]: above 1
    assert changes[-1] > 100 * changes[0]  # it diverges
    capped, _ = output_changes('capped')
    assert all(b <= 0.9 * a + 1e-12 for a, b in zip(capped, capped[1:]))  # a contraction by rho_max


def test_the_estimator_records_the_output_updates_factor():
    import numpy as np
    from optnets.lpom import LPOM

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), rng.integers(0, 3, 40)
    for loss, lipschitz in (('cross_entropy', 0.5), ('mse', 1.0)):
        model = LPOM((4,), mu=[1.0, 0.4], loss=loss, monitor=True, max_iter=1, batch_size=40).fit(x, y)
        assert model.history_[0]['output_rho'] == pytest.approx(lipschitz / 0.4)


def test_the_accelerated_weight_update_is_nesterovs_second_step():
    """Two iterations by hand: W1 = W0 - S(W0), then Y = W1 + ((t1 - 1)/t2)(W1 - W0) and W2 = Y - S(Y), with
    t1 = (1 + sqrt 5)/2 and t2 = (1 + sqrt(1 + 4 t1^2))/2 (here the restart does not trigger)."""
    act = get_activation('sigmoid')
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    target = act.phi(2 * torch.randn(20, 4, generator=gen, dtype=torch.float64))
    w0 = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    xa = solver.augment(x)

    def step(w):
        return torch.linalg.lstsq(xa, act.phi(xa @ w.T) - target).solution.T / act.lipschitz

    w1 = w0 - step(w0)
    t1 = (1 + math.sqrt(5)) / 2
    t2 = (1 + math.sqrt(1 + 4 * t1 * t1)) / 2
    y = w1 + ((t1 - 1) / t2) * (w1 - w0)
    w2 = y - step(y)
    assert torch.sum(step(y) * (w2 - w1)) <= 0  # no restart at this point
    torch.testing.assert_close(solver.weight_update(w0, x, target, act, iters=2, reg=1e-13), w2, rtol=1e-6, atol=1e-8)


def test_the_cnn_hidden_updates_fixed_point_minimises_its_block_with_unequal_mus():
    """The convolutional solver's update: the same stationarity as the MLP's, with the maps L in place of W."""
    layers = parse(('conv3x3', 'conv2x3'), (2, 5, 5), 3)
    gen = torch.Generator().manual_seed(7)
    weights = [
        0.3
        * torch.randn(
            layer.channels_out if isinstance(layer, Conv) else layer.features_out,
            layer.fan_in() + 1,
            generator=gen,
            dtype=torch.float64,
        )
        for layer in layers
    ]
    acts = [get_activation('sigmoid')] * 2 + [get_activation('identity')]
    mu = [None, 1.0, 0.25, 1.0]
    x = torch.rand(4, 2, 5, 5, generator=gen, dtype=torch.float64)
    xs = solver.forward(layers, weights, x, acts)
    xs[2] = (xs[2] + 0.2 * torch.randn(xs[2].shape, generator=gen, dtype=torch.float64)).clamp(0.05, 0.95)
    for _ in range(300):
        xs[1] = solver.update(1, layers, xs, weights, acts, mu, 'cross_entropy', None)
    point = xs[1].clone().requires_grad_()

    def layer(k, inputs, out):
        z = layers[k - 1].apply(weights[k - 1], inputs)
        return mu[k] * (acts[k - 1].f(out).sum() + acts[k - 1].g(z).sum() + ((out - z) ** 2).sum() / 2)

    value = layer(1, xs[0], point) + layer(2, point, xs[2])
    (gradient,) = torch.autograd.grad(value, point)
    assert gradient.abs().max() < 1e-8


def test_lpoms_elu_f_and_g_are_zero_and_continuous_at_zero():
    """The LPOM paper's ELU f and g lack the constant that makes them vanish at 0; these have it."""
    from optnets.lpom.activations import elu

    act, x = elu(0.7), torch.tensor([-1e-9, 0.0, 1e-9], dtype=torch.float64)
    assert act.f(x).abs().max() < 1e-15 and act.g(x).abs().max() < 1e-15


def test_the_pseudo_inverse_ridge_is_relative_to_the_mean_of_the_gram_diagonal():
    """pinv_solver solves (G + eps I) with eps = reg * mean(diag G): the ridge's scale, written out and compared
    (a ridge scaled by the diagonal's sum instead moves the result far beyond the tolerance)."""
    from optnets.lpom.solver import augment, pinv_solver

    gen = torch.Generator().manual_seed(0)
    for rows, cols in ((5, 40), (40, 5)):  # the wide and the tall Gram matrix
        x = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
        xa = augment(x)
        wide = xa.shape[0] <= xa.shape[1]
        gram = xa @ xa.T if wide else xa.T @ xa
        ridge = 0.1 * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=torch.float64)
        r = torch.randn(gram.shape[0] if wide else xa.shape[0], 3, generator=gen, dtype=torch.float64)
        expected = xa.T @ torch.linalg.solve(gram + ridge, r) if wide else torch.linalg.solve(gram + ridge, xa.T @ r)
        torch.testing.assert_close(pinv_solver(x, 0.1)(r), expected, rtol=1e-10, atol=1e-12)
