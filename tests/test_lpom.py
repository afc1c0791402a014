"""LPOM: the fixed points, the monotone block updates, the estimator API and its errors."""
import numpy as np
import pytest
import torch

from optnets.lpom import LPOM, get_activation, solver

CLOSED_FORM = ['relu', 'leaky_relu', 'sigmoid', 'tanh', 'elu']
torch.set_default_dtype(torch.float32)


def network(activation, widths=(6, 8, 7, 4), scale=1.0, seed=0, loss='cross_entropy'):
    """A small LPOM problem in float64: weights, consistent activations, targets."""
    gen = torch.Generator().manual_seed(seed)
    acts = [get_activation(activation)] * (len(widths) - 2) + [get_activation('identity')]
    weights = [scale * torch.randn(o, i + 1, generator=gen, dtype=torch.float64) / i ** 0.5
               for i, o in zip(widths, widths[1:])]
    x = torch.randn(12, widths[0], generator=gen, dtype=torch.float64)
    labels = torch.randint(0, widths[-1], (12,), generator=gen)
    target = torch.nn.functional.one_hot(labels, widths[-1]).double()
    mu = [None, 1.0, 2.0, 4.0][:len(widths)]
    return weights, acts, mu, x, target


@pytest.mark.parametrize('activation', CLOSED_FORM + ['softplus', 'hardtanh'])
def test_consistent_activations_are_a_fixed_point(activation):
    weights, acts, mu, x, _ = network(activation)
    xs = solver.forward(weights, x, acts)
    for i in range(1, len(weights)):
        torch.testing.assert_close(solver.hidden_update(i, xs, weights, acts, mu), xs[i], rtol=0, atol=1e-12)


def objective(xs, weights, acts, mu, target, loss='cross_entropy'):
    return solver.objective(xs, weights, acts, mu, loss, target).item()


@pytest.mark.parametrize('iters', [1, 3, 10])
@pytest.mark.parametrize('loss', ['cross_entropy', 'mse'])
@pytest.mark.parametrize('activation', CLOSED_FORM)
def test_weight_updates_never_increase_the_objective(activation, loss, iters):
    for seed in range(3):
        weights, acts, mu, x, target = network(activation, seed=seed)
        xs = solver.forward(weights, x, acts)
        xs = solver.activation_sweep(xs, weights, acts, mu, loss, target)  # lifted, no longer consistent
        for i in range(len(weights)):
            before = objective(xs, weights, acts, mu, target, loss)
            weights[i] = solver.weight_update(weights[i], xs[i], xs[i + 1], acts[i], iters=iters)
            after = objective(xs, weights, acts, mu, target, loss)
            assert after <= before + 1e-9 * abs(before), (seed, i, before, after)


@pytest.mark.parametrize('loss', ['cross_entropy', 'mse'])
@pytest.mark.parametrize('activation', CLOSED_FORM)
def test_activation_updates_never_increase_the_objective_when_rho_below_one(activation, loss):
    for seed in range(3):
        weights, acts, mu, x, target = network(activation, seed=seed, scale=0.3, loss=loss)
        mu = [None, 1.0, 1.0, 1.0]
        xs = solver.forward(weights, x, acts)
        gen = torch.Generator().manual_seed(seed)  # new weights: every activation is now inconsistent
        weights = [w + 0.03 * torch.randn(w.shape, generator=gen, dtype=w.dtype) for w in weights]
        assert max(solver.contraction(weights, acts, mu)) < 1
        for _ in range(3):
            for i in range(1, len(weights) + 1):
                before = objective(xs, weights, acts, mu, target, loss)
                xs[i] = (solver.hidden_update(i, xs, weights, acts, mu) if i < len(weights)
                         else solver.output_update(xs, weights, acts, mu, loss, target))
                after = objective(xs, weights, acts, mu, target, loss)
                assert after <= before + 1e-9 * abs(before), (seed, i, before, after)


def blobs(n=400, d=10, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, d))
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_fit_learns_and_to_torch_predicts_the_same():
    x, y = blobs()
    model = LPOM([10, 32, 16, 3], activation='relu', mu=10, progress=False).fit(x[:300], y[:300], epochs=3,
                                                                                  batch_size=50)
    assert model.score(x[300:], y[300:]) > 0.9
    net = model.to_torch()
    with torch.no_grad():
        logits = net(torch.as_tensor(x))
    np.testing.assert_array_equal(logits.argmax(1).numpy(), model.predict(x))
    torch.testing.assert_close(logits, model.decision_function(x), rtol=1e-5, atol=1e-5)
    probabilities = model.predict_proba(x)
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)


def test_schedules_and_parallel_weights():
    x, y = blobs()
    fit = dict(epochs=4, batch_size=50)
    serial = LPOM([10, 16, 3], mu=1, progress=False).fit(x, y, **fit)
    threads = LPOM([10, 16, 3], mu=1, parallel_weights=True, progress=False).fit(x, y, **fit)
    for a, b in zip(serial.weights, threads.weights):
        assert torch.equal(a, b)  # the layers' weight updates are independent: same result in any order
    jacobi = LPOM([10, 16, 3], mu=1, schedule='parallel', progress=False).fit(x, y, **fit)
    assert serial.score(x, y) > 0.95 and jacobi.score(x, y) > 0.85


def test_seed_makes_runs_reproducible():
    x, y = blobs()
    runs = [LPOM([10, 8, 3], seed=3, progress=False).fit(x, y, epochs=1, batch_size=64) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].weights, runs[1].weights))


def test_objective_and_losses():
    x, y = blobs(n=60)
    model = LPOM([10, 8, 3], activation='sigmoid', loss='mse', progress=False)
    before = model.objective(x, y)
    model.fit(x, y, epochs=2, batch_size=60)
    assert model.objective(x, y) < before
    with pytest.raises(AttributeError, match='predict_proba'):
        model.predict_proba(x)
    with pytest.raises(NotImplementedError):
        LPOM([10, 8, 3], activation='softplus', progress=False).objective(x, y)


def test_any_non_decreasing_callable():
    """A plain callable (ReLU6) is accepted, its Lipschitz constant estimated, and LPOM learns with it."""
    relu6 = LPOM([10, 8, 3], activation=lambda t: torch.clamp(t, 0, 6), progress=False)
    assert relu6.acts[0].lipschitz == pytest.approx(1.0, abs=1e-3)
    x, y = blobs(n=200)
    before = relu6.score(x, y)
    relu6.fit(x, y, epochs=2, batch_size=50)
    assert relu6.score(x, y) > max(0.8, before)
    hidden = relu6.acts[0].phi(torch.linspace(-10, 10, 101))
    assert float(hidden.min()) == 0.0 and float(hidden.max()) == 6.0  # the callable itself, not a stand-in


@pytest.mark.parametrize('kwargs, message', [
    (dict(activation='gelu'), 'not non-decreasing'),
    (dict(activation='swish'), 'not non-decreasing'),
    (dict(activation=torch.sin), 'not non-decreasing'),
    (dict(activation='bogus'), 'unknown activation'),
    (dict(mu=0.0), 'mu must be positive'),
    (dict(mu=[1.0, -2.0]), 'mu must be positive'),
    (dict(mu=[1.0, 2.0, 3.0]), 'one value per layer'),
    (dict(loss='hinge'), 'loss must be one of'),
])
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LPOM([10, 8, 3], progress=False, **kwargs)


def test_bad_data_fails_before_any_work():
    data, y = blobs(n=20)
    model = LPOM([7, 8, 3], progress=False)
    untouched = [w.clone() for w in model.weights]
    with pytest.raises(ValueError, match='7 features'):
        model.fit(data, y)
    data = data[:, :7].copy()
    data[3, 2] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        model.fit(data, y)
    with pytest.raises(ValueError, match='labels must lie'):
        model.fit(np.zeros((20, 7), np.float32), y + 5)
    assert all(torch.equal(a, b) for a, b in zip(untouched, model.weights))
