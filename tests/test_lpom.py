"""LPOM: the fixed points, the monotone block updates, the estimator API and its errors."""

import numpy as np
import pytest
import torch

from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from optnets.lpom import LPOM, LPOMConv, get_activation, solver
from optnets.lpom.layers import Dense, spectral_norm_squared

CLOSED_FORM = ['relu', 'leaky_relu', 'sigmoid', 'tanh', 'elu']
torch.set_default_dtype(torch.float32)


def network(activation, widths=(6, 8, 7, 4), scale=1.0, seed=0, loss='cross_entropy'):
    """A small LPOM problem in float64: weights, consistent activations, targets."""
    gen = torch.Generator().manual_seed(seed)
    acts = [get_activation(activation)] * (len(widths) - 2) + [get_activation('identity')]
    weights = [
        scale * torch.randn(o, i + 1, generator=gen, dtype=torch.float64) / i**0.5 for i, o in zip(widths, widths[1:])
    ]
    x = torch.randn(12, widths[0], generator=gen, dtype=torch.float64)
    labels = torch.randint(0, widths[-1], (12,), generator=gen)
    target = torch.nn.functional.one_hot(labels, widths[-1]).double()
    mu = [None, 1.0, 2.0, 4.0][: len(widths)]
    return weights, acts, mu, x, target


def dense(weights):
    """The MLP's layers for these weights (``d_out x (d_in + 1)`` each): dense maps."""
    return [Dense(w.shape[1] - 1, w.shape[0], (w.shape[1] - 1,)) for w in weights]


@pytest.mark.parametrize('activation', CLOSED_FORM + ['softplus', 'hardtanh'])
def test_consistent_activations_are_a_fixed_point(activation):
    weights, acts, mu, x, _ = network(activation)
    xs = solver.forward(dense(weights), weights, x, acts)
    for i in range(1, len(weights)):
        torch.testing.assert_close(
            solver.hidden_update(i, dense(weights), xs, weights, acts, mu), xs[i], rtol=0, atol=1e-12
        )


def objective(xs, weights, acts, mu, target, loss='cross_entropy'):
    return solver.objective(dense(weights), xs, weights, acts, mu, loss, target).item()


@pytest.mark.parametrize('iters', [1, 3, 10])
@pytest.mark.parametrize('loss', ['cross_entropy', 'mse'])
@pytest.mark.parametrize('activation', CLOSED_FORM)
def test_weight_updates_never_increase_the_objective(activation, loss, iters):
    for seed in range(3):
        weights, acts, mu, x, target = network(activation, seed=seed)
        xs = solver.forward(dense(weights), weights, x, acts)
        xs = solver.activation_sweep(
            dense(weights), xs, weights, acts, mu, loss, target
        )  # lifted, no longer consistent
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
        xs = solver.forward(dense(weights), weights, x, acts)
        gen = torch.Generator().manual_seed(seed)  # new weights: every activation is now inconsistent
        weights = [w + 0.03 * torch.randn(w.shape, generator=gen, dtype=w.dtype) for w in weights]
        assert max(solver.contraction(dense(weights), weights, acts, mu)) < 1
        for _ in range(3):
            for i in range(1, len(weights) + 1):
                before = objective(xs, weights, acts, mu, target, loss)
                xs[i] = (
                    solver.hidden_update(i, dense(weights), xs, weights, acts, mu)
                    if i < len(weights)
                    else solver.output_update(dense(weights), xs, weights, acts, mu, loss, target)
                )
                after = objective(xs, weights, acts, mu, target, loss)
                assert after <= before + 1e-9 * abs(before), (seed, i, before, after)


def blobs(n=400, d=10, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, d))
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_fit_learns_and_to_torch_predicts_the_same():
    x, y = blobs()
    model = LPOM((32, 16), activation='relu', max_iter=3, batch_size=50).fit(x[:300], y[:300])
    assert model.score(x[300:], y[300:]) > 0.9
    net = model.to_torch()
    with torch.no_grad():
        logits = net(torch.as_tensor(x))
    np.testing.assert_array_equal(logits.argmax(1).numpy(), model.predict(x))
    np.testing.assert_allclose(logits.numpy(), model.decision_function(x), rtol=1e-5, atol=1e-5)
    probabilities = model.predict_proba(x)
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)


def test_schedules_and_parallel_weights():
    x, y = blobs()
    fit = dict(mu=1, max_iter=4, batch_size=50, random_state=0, hidden_layer_sizes=(16,))
    serial = LPOM(**fit).fit(x, y)
    threads = LPOM(parallel_weights=True, **fit).fit(x, y)
    for a, b in zip(serial.weights_, threads.weights_):
        assert torch.equal(a, b)  # the layers' weight updates are independent: same result in any order
    assert serial.score(x, y) > 0.95
    # Jacobi (every activation from the previous sweep's) learns, but unreliably: 0.45-0.91 over seeds 0-5
    jacobi = [LPOM(schedule='parallel', **{**fit, 'random_state': seed}).fit(x, y).score(x, y) for seed in range(3)]
    assert np.mean(jacobi) > 0.5  # chance is 1/3


def test_random_state_makes_fits_reproducible_and_fit_starts_over():
    x, y = blobs()
    model = LPOM((8,), random_state=3, batch_size=64)
    first = [w.clone() for w in model.fit(x, y).weights_]
    assert all(torch.equal(a, b) for a, b in zip(first, model.fit(x, y).weights_))  # a second fit starts over
    assert all(torch.equal(a, b) for a, b in zip(first, clone(model).fit(x, y).weights_))
    warm = LPOM((8,), random_state=3, batch_size=64, warm_start=True).fit(x, y)
    assert not all(torch.equal(a, b) for a, b in zip(first, warm.fit(x, y).weights_))  # warm_start continues
    assert warm.n_iter_ == 2


def test_labels_of_any_type_and_partial_fit():
    x, y = blobs(n=200)
    names = np.array(['cat', 'dog', 'eel'])[y]
    model = LPOM((8,), max_iter=3, batch_size=50, random_state=0).fit(x, names)
    assert model.classes_.tolist() == ['cat', 'dog', 'eel'] and model.n_features_in_ == 10
    assert set(model.predict(x)) <= set(model.classes_) and model.score(x, names) > 0.8
    stream = LPOM((8,), random_state=0)
    with pytest.raises(ValueError, match='classes='):
        stream.partial_fit(x[:50], names[:50])
    for batch in range(4):
        stream.partial_fit(x[batch * 50 : (batch + 1) * 50], names[batch * 50 : (batch + 1) * 50], classes=names)
    assert stream.score(x, names) > 0.6
    with pytest.raises(ValueError, match='not in classes_'):
        stream.partial_fit(x[:5], ['fox'] * 5)


def test_not_fitted_and_numpy_out():
    x, y = blobs(n=40)
    with pytest.raises(NotFittedError):
        LPOM().predict(x)
    model = LPOM((4,)).fit(x, y)
    for out in (model.decision_function(x), model.predict_proba(x), model.predict(x)):
        assert isinstance(out, np.ndarray)
    binary = LPOM((4,)).fit(x, y % 2)
    assert binary.decision_function(x).shape == (40,)  # scikit-learn's binary convention


def test_objective_and_losses():
    x, y = blobs(n=60)
    model = LPOM((8,), activation='sigmoid', loss='mse', max_iter=0 + 1, batch_size=60, random_state=0)
    model.set_params(max_iter=1).initialize(10, np.unique(y))
    before = model.objective(x, y)
    model.set_params(max_iter=2, warm_start=True).fit(x, y)
    assert model.objective(x, y) < before
    with pytest.raises(AttributeError, match='predict_proba'):
        model.predict_proba(x)
    with pytest.raises(NotImplementedError):
        LPOM((8,), activation='softplus').fit(x, y).objective(x, y)


def test_any_non_decreasing_callable():
    """A plain callable (ReLU6) is accepted, its Lipschitz constant estimated, and LPOM learns with it."""

    def clamp6(t):
        return torch.clamp(t, 0, 6)

    assert get_activation(clamp6).lipschitz == pytest.approx(1.0, abs=1e-3)
    relu6 = LPOM((8,), activation=clamp6, max_iter=2, batch_size=50, random_state=0)
    x, y = blobs(n=200)
    relu6.initialize(10, np.unique(y))
    before = relu6.score(x, y)
    relu6.set_params(warm_start=True).fit(x, y)
    assert relu6.score(x, y) > max(0.8, before)
    hidden = relu6.to_torch()[1](torch.linspace(-10, 10, 101))
    assert float(hidden.min()) == 0.0 and float(hidden.max()) == 6.0  # the callable itself, not a stand-in
    assert get_activation(clamp6) is get_activation(clamp6)  # estimated once, not at every forward


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(activation='gelu'), 'not non-decreasing'),
        (dict(activation='swish'), 'not non-decreasing'),
        (dict(activation=torch.sin), 'not non-decreasing'),
        (dict(activation='bogus'), 'unknown activation'),
        (dict(mu=0.0), 'mu must be positive'),
        (dict(mu=[1.0, -2.0]), 'mu must be positive'),
        (dict(mu=[1.0, 2.0, 3.0]), 'one value per layer'),
        (dict(loss='hinge'), 'loss must be one of'),
        (dict(pinv_reg=0), 'pinv_reg must be positive'),
        (dict(batch_size=0), 'batch_size must be'),
        (dict(max_iter=-1), 'max_iter must be'),
        (dict(activation_iters=-3), 'activation_iters must be'),
        (dict(hidden_layer_sizes=(8, 0)), 'hidden_layer_sizes'),
        (dict(rho_max=1.5), 'rho_max'),
        (dict(mu=None), 'mu must be a positive number'),
        (dict(mu=np.array(3.0)), 'mu must be a positive number'),
        (dict(activation=lambda x: 3.0), 'must map a tensor to a tensor'),
        (dict(activation=lambda x: [0.0]), 'must map a tensor to a tensor'),
        (dict(activation='leaky_relu', activation_kwargs={'slope': 0.1}), "takes \\['alpha'\\], not \\['slope'\\]"),
        (dict(activation='relu', activation_kwargs={'alpha': 0.1}), 'takes no arguments'),
        (dict(hidden_layer_sizes=(10**13,)), 'cannot be allocated'),
    ],
)
def test_bad_settings_fail_at_fit_before_any_work(kwargs, message):
    x, y = blobs(n=20)
    model = LPOM(**kwargs)
    assert model.get_params()[next(iter(kwargs))] is next(iter(kwargs.values()))  # stored unchanged
    with pytest.raises(ValueError, match=message):
        model.fit(x, y)
    assert not hasattr(model, 'weights_')


@pytest.mark.parametrize(
    'data, labels, message',
    [
        (np.zeros((0, 10)), np.zeros(0), '0 sample'),
        (np.full((20, 10), np.nan), None, 'NaN'),
        (None, np.linspace(0, 1, 20), 'Unknown label type'),
        (None, np.array([object()] * 20), 'Unknown label type'),
        ('huge', None, 'overflow float32'),
    ],
)
def test_bad_data_fails_before_any_work(data, labels, message):
    x, y = blobs(n=20)
    x = x * 1e20 if isinstance(data, str) else x if data is None else data
    y = y if labels is None else labels
    model = LPOM((4,), random_state=0).fit(*blobs(n=20))
    untouched = [w.clone() for w in model.weights_]
    with pytest.raises(ValueError, match=message):
        model.set_params(warm_start=True).fit(x, y)
    assert all(torch.equal(a, b) for a, b in zip(untouched, model.weights_))


def test_predict_checks_the_feature_count():
    model = LPOM((4,), random_state=0).fit(*blobs(n=20))
    with pytest.raises(ValueError, match='10 features'):
        model.predict(np.zeros((3, 7)))


def test_scikit_learn_estimator_contract():
    """scikit-learn's own estimator checks, every one of them."""
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(LPOM(hidden_layer_sizes=(16,), max_iter=20, batch_size=50, random_state=0))


def test_rho_is_recorded_and_rho_max_reaches_the_updates():
    """history_ holds Theorem 2's rho per hidden update (mu's own, above 1 here), and ``rho_max`` changes the
    updates the estimator makes."""
    x, y = blobs()
    loose = LPOM((32, 16), mu=[1.0, 100.0, 100.0], max_iter=2, batch_size=100, random_state=0, monitor=True)
    tight = clone(loose).set_params(rho_max=0.5)
    for model in (loose.fit(x, y), tight.fit(x, y)):
        assert len(model.history_) == 8 and all(len(h['rho']) == 2 for h in model.history_)
    assert max(max(h['rho']) for h in loose.history_) > 1  # the settings break Theorem 2's condition
    assert not any(torch.equal(a, b) for a, b in zip(loose.weights_, tight.weights_))


@pytest.mark.parametrize('activation', CLOSED_FORM)
def test_capped_ratio_makes_each_hidden_update_a_contraction(activation):
    """Theorem 2 with the ratio ``rho_max / (beta beta ||W[i]||^2)`` in place of mu's (which breaks its condition
    here): repeating one hidden update with its neighbours fixed shrinks the change by ``rho_max`` each time.
    (A capped update minimises the objective with ``mu[i+1]`` lowered, so the objective itself may rise.)"""
    weights, acts, _, x, target = network(activation, scale=3.0)
    mu, rho_max = [None, 1.0, 30.0, 30.0], 0.5
    xs = solver.forward(dense(weights), weights, x, acts)
    assert max(solver.contraction(dense(weights), weights, acts, mu)) > 1
    ratios = solver.contracting_ratios(dense(weights), weights, acts, mu, rho_max, 'cross_entropy')
    gen = torch.Generator().manual_seed(5)
    for i in range(1, len(weights)):
        xs[i] = xs[i] + torch.rand(xs[i].shape, generator=gen, dtype=xs[i].dtype)
        changes = []
        for _ in range(6):
            new = solver.hidden_update(i, dense(weights), xs, weights, acts, mu, ratios[i])
            changes.append(float((new - xs[i]).norm()))
            xs[i] = new
        assert all(later <= rho_max * earlier * (1 + 1e-9) for earlier, later in zip(changes, changes[1:])), changes


@pytest.mark.parametrize('shape', [(5, 9), (9, 5), (1, 4)])
def test_spectral_norm_squared_is_the_largest_singular_value_squared(shape):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    expected = torch.linalg.matrix_norm(weight.double(), 2).item() ** 2
    assert spectral_norm_squared(weight) == pytest.approx(expected, rel=1e-6)


def test_one_class_is_refused_before_any_state_as_scikit_learns_classifiers_do():
    x, _ = blobs(n=20)
    model = LPOM((4,))
    with pytest.raises(ValueError, match='at least 2 classes'):
        model.fit(x, np.zeros(20))
    with pytest.raises(ValueError, match='at least 2 classes'):
        model.partial_fit(x, np.zeros(20), classes=[0])
    assert not any(key.endswith('_') for key in vars(model))


def test_partial_fit_refuses_labels_outside_classes_before_any_state():
    x, y = blobs(n=20)
    model = LPOM((4,))
    with pytest.raises(ValueError, match=r'labels \[7\] that are not in classes'):
        model.partial_fit(x, np.where(y == y[0], 7, y), classes=np.unique(y))
    assert not any(key.endswith('_') for key in vars(model))


def test_inputs_as_given_warn_when_large_and_pixels_in_0_1_never():
    """With ``scale_inputs=False`` LPOM takes its inputs as given: standardized features, as scikit-learn's MLP docs
    recommend, warn once at fit; pixels in [0, 1] do not, and the default scaling leaves them as they are."""
    import warnings

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    gen = np.random.default_rng(0)
    x, y = gen.random((60, 20)).astype(np.float32), np.arange(60) % 3  # in [0, 1], as pixels
    x[0, 0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        scaled = LPOM(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(x, y)
        make_pipeline(StandardScaler(), LPOM(hidden_layer_sizes=(8,), max_iter=1, random_state=0)).fit(x, y)
    given = LPOM(hidden_layer_sizes=(8,), max_iter=1, random_state=0, scale_inputs=False).fit(x, y)
    assert scaled.input_scale_ == 1.0 and given.input_scale_ == 1.0
    for a, b in zip(scaled.weights_, given.weights_):
        assert torch.equal(a, b)
    with pytest.warns(UserWarning, match=r'root mean square of 1\.00: LPOM is not invariant') as caught:
        make_pipeline(StandardScaler(), LPOM(hidden_layer_sizes=(8,), max_iter=1, scale_inputs=False)).fit(x, y)
    assert len(caught) == 1


@pytest.mark.parametrize(
    'make, normalized',
    [
        (lambda: LPOM((16,), max_iter=2, batch_size=50), False),
        (lambda: LPOMConv(('conv4x3', 'avg2'), (1, 6, 6), max_iter=2, batch_size=50), False),
        (lambda: LPOMConv(('conv4x3bn', 'avg2'), (1, 6, 6), max_iter=2, batch_size=50), True),
    ],
    ids=['LPOM', 'LPOMConv', 'LPOMConv with batch norm'],
)
def test_a_global_scale_of_the_inputs_changes_nothing_through_fit_predict_to_torch_and_pickle(make, normalized):
    """An input scale c weighs the layers' terms against the loss much as mu times c**2 would, so the estimator
    divides by the fit's largest magnitude: X and c X give the same fit and the same predictions, with
    ``to_torch`` (the scale folded into the first layer, before its batch norm) and a pickled copy predicting on
    raw inputs alike. Without the scaling a fit differs, unless a batch norm after the first layer undoes the
    scale itself."""
    import pickle

    x, y = blobs(n=200, d=36)
    x = x / np.abs(x).max()
    fits = {c: make().set_params(random_state=0).fit(x * c, y) for c in (1.0, 8.0)}
    assert fits[8.0].input_scale_ == pytest.approx(8.0)
    np.testing.assert_allclose(fits[8.0].decision_function(x * 8), fits[1.0].decision_function(x), atol=1e-4)
    copy = pickle.loads(pickle.dumps(fits[8.0]))
    np.testing.assert_array_equal(copy.decision_function(x * 8), fits[8.0].decision_function(x * 8))
    with torch.no_grad():
        logits = fits[8.0].to_torch()(torch.as_tensor(x * 8).reshape(len(x), *fits[8.0].layers_[0].in_shape))
    np.testing.assert_allclose(logits.numpy(), fits[8.0].decision_function(x * 8), rtol=1e-4, atol=1e-4)
    if not normalized:
        unscaled = make().set_params(random_state=0, scale_inputs=False).fit(x * 8, y)
        assert not np.allclose(unscaled.decision_function(x * 8), fits[8.0].decision_function(x * 8), atol=1e-2)


def test_a_standard_scaler_pipeline_scores_within_two_points_of_the_pixels():
    """scikit-learn's MLP docs recommend ``make_pipeline(StandardScaler(), ...)``: in 3-fold cross-validation on
    2,000 Fashion-MNIST training rows it scores within 2 points of LPOM on the pixels (0.48 against 0.76 before
    LPOM scaled its inputs), and so it does with ``rho_max`` (0.36 before)."""
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from optnets.recipes.data import fashion_mnist_flat

    x, y = (t.numpy() for t in fashion_mnist_flat(True, slice(0, 2000)))
    for kwargs in ({}, {'rho_max': 0.9}):
        pixels = cross_val_score(LPOM(random_state=0, **kwargs), x, y, cv=3).mean()
        standardized = cross_val_score(make_pipeline(StandardScaler(), LPOM(random_state=0, **kwargs)), x, y, cv=3)
        assert standardized.mean() > pixels - 0.02, (kwargs, pixels, standardized)


@pytest.mark.parametrize('peak', [1.0, 4.0], ids=['scale_one', 'scaled'])
def test_fit_partial_fit_and_predict_leave_the_callers_x_as_it_was(peak):
    """The fit reads ``X`` without copying it where its scale is 1: nothing it does may write into the caller's
    array."""
    rng = np.random.default_rng(0)
    x, y = rng.random((120, 12)).astype(np.float32) * peak, rng.integers(0, 3, 120)
    x[0, 0] = peak  # the scale scale_inputs divides by
    given = x.copy()
    model = LPOM((8,), max_iter=2, batch_size=40).fit(x, y)
    model.partial_fit(x, y)
    model.predict(x)
    model.score(x, y)
    np.testing.assert_array_equal(x, given)
