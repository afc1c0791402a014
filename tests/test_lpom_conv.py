"""LPOM for convolutional networks: the linear maps and their adjoints, the block updates' guarantees for
convolution and pooling, the reduction to the MLP, and the estimator."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from optnets.lpom import LPOM, LPOMConv, get_activation, solver
from optnets.lpom.layers import Conv, parse, power_norm_squared

from tests.test_lpom import blobs

GEN = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def network(
    shape=(2, 8, 8),
    architecture=('conv3x3', 'avg2', 'conv4x3', 'fc5'),
    classes=3,
    n=6,
    scale=1.0,
    activation='relu',
    seed=0,
    dtype=torch.float64,
):
    layers = parse(architecture, shape, classes)
    weights = []
    for layer in layers:
        d_out = layer.channels_out if isinstance(layer, Conv) else layer.features_out
        weights.append(
            scale * torch.randn(d_out, layer.fan_in() + 1, generator=GEN(seed), dtype=dtype) / layer.fan_in() ** 0.5
        )
    acts = [get_activation(activation)] * (len(layers) - 1) + [get_activation('identity')]
    x = torch.rand(n, *shape, generator=GEN(seed + 1), dtype=dtype)
    target = torch.nn.functional.one_hot(torch.randint(0, classes, (n,), generator=GEN(seed + 2)), classes)
    return layers, weights, acts, x, target.to(dtype)


@pytest.mark.parametrize(
    'pool, stride, size, skip',
    [
        (1, 1, 6, 0),
        (2, 1, 6, 0),
        (1, 2, 7, 0),
        (2, 2, 8, 0),
        (2, 1, 7, 0),
        (3, 1, 8, 0),
        (3, 2, 11, 0),
        (2, 3, 9, 0),
        (1, 3, 8, 0),
        (1, 1, 6, 1.0),
        (2, 1, 6, -0.5),
        (3, 1, 7, 0.5),
    ],
)
def test_conv_rows_and_adjoint_are_the_linear_map(pool, stride, size, skip):
    out = 2 if skip else 3  # a skip keeps the width
    layer = Conv(2, out, 3, pool, stride=stride, skip=skip)
    weight = torch.randn(out, 2 * 9 + 1, generator=GEN(), dtype=torch.float64)
    x = torch.randn(4, 2, size, size, generator=GEN(1), dtype=torch.float64)
    y = layer.apply(weight, x)
    assert y.shape == (4, *layer.out_shape((2, size, size)))
    offset = layer.offset(x) if skip else 0  # the skip's part, fixed in the weight update
    torch.testing.assert_close(layer.to_rows(y), torch.addmm(weight[:, -1], layer.rows(x), weight[:, :-1].T) + offset)
    torch.testing.assert_close(layer.module(weight)(x), y)  # to_torch's module computes the same map
    r = torch.randn_like(y)
    bare = torch.cat([weight[:, :-1], torch.zeros(out, 1, dtype=torch.float64)], 1)
    lhs = (layer.apply(bare, x) * r).sum()  # <L x, r> = <x, L^T r>
    torch.testing.assert_close(lhs, (x * layer.adjoint(weight, r, x)).sum())


def test_operator_norm_is_the_largest_singular_value():
    layer, weight = Conv(1, 2, 3, 2, in_shape=(1, 4, 4)), torch.randn(2, 10, generator=GEN(), dtype=torch.float64)
    matrix = torch.stack(
        [
            layer.apply(
                torch.cat([weight[:, :-1], torch.zeros(2, 1, dtype=torch.float64)], 1), e.reshape(1, 1, 4, 4)
            ).flatten()
            for e in torch.eye(16, dtype=torch.float64)
        ],
        1,
    )
    expected = torch.linalg.matrix_norm(matrix, 2).item() ** 2
    assert power_norm_squared(layer, weight, iters=200) == pytest.approx(expected, rel=1e-6)


STRIDED = ('conv3x3s2', 'conv4x3', 'fc5')  # the stride joins the first map, as pooling does
RESIDUAL = ('conv3x3', 'conv3x3-0.5x', 'avg2', 'fc5')  # a skip: a fixed offset in the weight update


@pytest.mark.parametrize('activation', ['relu', 'sigmoid', 'tanh'])
@pytest.mark.parametrize('architecture', [('conv3x3', 'avg2', 'conv4x3', 'fc5'), STRIDED, RESIDUAL])
def test_weight_updates_never_increase_the_objective(activation, architecture):
    layers, weights, acts, x, target = network(architecture=architecture, activation=activation)
    mu = [None, 1.0, 2.0, 1.0, 1.0]
    xs = solver.forward(layers, weights, x, acts)
    xs = [xs[0]] + [v + 0.1 * torch.randn(v.shape, generator=GEN(i), dtype=v.dtype) for i, v in enumerate(xs[1:])]
    xs = [xs[0]] + [acts[i].phi(v) if activation != 'relu' else v.clamp_min(0) for i, v in enumerate(xs[1:])]
    for i in range(len(weights)):
        before = solver.objective(layers, xs, weights, acts, mu, 'cross_entropy', target)
        weights[i] = solver.weight_step(layers[i], weights[i], xs[i], xs[i + 1], acts[i], 3, 1e-6)
        after = solver.objective(layers, xs, weights, acts, mu, 'cross_entropy', target)
        assert after <= before + 1e-9 * abs(before), (i, before, after)
        assert after < before  # and it does something


@pytest.mark.parametrize('activation', ['relu', 'sigmoid'])
@pytest.mark.parametrize('architecture', [('conv3x3', 'avg2', 'conv4x3', 'fc5'), STRIDED, RESIDUAL])
def test_activation_updates_never_increase_the_objective_when_rho_below_one(activation, architecture):
    layers, weights, acts, x, target = network(architecture=architecture, activation=activation, scale=0.5)
    mu = [None, 1.0, 1.0, 1.0, 1.0]
    rho = solver.factors(
        layers, weights, acts, lambda layer, w: power_norm_squared(layer, w, iters=100)
    )  # mu's ratios are 1
    assert max(rho) < 1
    xs = solver.forward(layers, weights, x, acts)
    weights = [w + 0.05 * torch.randn(w.shape, generator=GEN(9), dtype=w.dtype) for w in weights]
    for _ in range(3):
        for i in range(1, len(weights) + 1):
            before = solver.objective(layers, xs, weights, acts, mu, 'cross_entropy', target)
            xs[i] = solver.update(i, layers, xs, weights, acts, mu, 'cross_entropy', target)
            after = solver.objective(layers, xs, weights, acts, mu, 'cross_entropy', target)
            assert after <= before + 1e-9 * abs(before), (i, before, after)


def test_dense_layers_reduce_to_the_mlp():
    """An architecture of fully connected layers is the MLP: the same weights after fitting, from the same start,
    bit for bit (one solver)."""
    x, y = blobs(n=200)
    mlp = LPOM((16,), random_state=0, max_iter=2, batch_size=50).fit(x, y)
    as_conv = LPOMConv(('fc16',), input_shape=(10,), random_state=0, max_iter=2, batch_size=50).fit(x, y)
    assert all(torch.equal(a, b) for a, b in zip(mlp.weights_, as_conv.weights_))


def squares(n=300, seed=0):
    """Images of 1x8x8 noise where a bright 2x2 square marks each of 3 classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    images = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for label, (row, col) in enumerate([(1, 1), (1, 5), (5, 3)]):
        images[y == label, 0, row : row + 2, col : col + 2] += 2
    return images, y


@pytest.mark.parametrize('first', ['conv4x3', 'conv4x3bn', 'conv4x3s2'])
def test_lpom_conv_learns_and_to_torch_predicts_the_same(first):
    images, y = squares()
    model = LPOMConv(
        (first, 'avg2'), input_shape=(1, 8, 8), max_iter=3, batch_size=50, random_state=0, monitor=True
    ).fit(images[:200], y[:200])
    assert model.score(images[200:], y[200:]) > 0.9
    assert model.score(images[200:].reshape(100, -1), y[200:]) == model.score(images[200:], y[200:])
    with torch.no_grad():
        logits = model.to_torch()(torch.from_numpy(images))
    np.testing.assert_allclose(logits.numpy(), model.decision_function(images), rtol=1e-4, atol=1e-5)
    assert len(model.history_) == 12 and len(model.history_[0]['rho']) == 1


@pytest.mark.parametrize('architecture', [('conv3x3', 'avg2', 'conv4x3', 'fc5'), ('conv3x3', 'conv4x3bn', 'fc5')])
def test_capped_ratio_makes_each_hidden_update_a_contraction(architecture):
    """Theorem 2 with the ratio ``rho_max / (beta beta ||L||^2)`` in place of mu's (which breaks its condition
    here): repeating one hidden update with its neighbours fixed shrinks the change by ``rho_max`` each time."""
    layers, weights, acts, x, target = network(architecture=architecture, scale=3.0)
    mu, rho_max = [None, 1.0, 30.0, 30.0, 30.0], 0.5
    xs = solver.forward(layers, weights, x, acts, refresh=True)  # a BN layer's scale set from this batch
    factor = solver.factors(layers, weights, acts, lambda layer, w: power_norm_squared(layer, w, iters=200))[0]
    assert mu[2] / mu[1] * factor > 1  # mu's ratio breaks the condition here
    ratio = solver.capped_ratios([factor], mu, rho_max, solver.output_factor(acts, 'cross_entropy'))[1]
    assert ratio * factor == pytest.approx(rho_max)
    xs[1] = xs[1] + torch.rand(xs[1].shape, generator=GEN(5), dtype=xs[1].dtype)
    changes = []
    for _ in range(6):
        new = solver.update(1, layers, xs, weights, acts, mu, 'cross_entropy', target, {1: ratio})
        changes.append(float((new - xs[1]).norm()))
        xs[1] = new
    assert all(later <= rho_max * earlier * (1 + 1e-6) for earlier, later in zip(changes, changes[1:])), changes


def test_rho_max_caps_the_estimators_hidden_updates():
    """``rho_max`` reaches LPOMConv's updates (the weights change), and a value outside (0, 1) fails first."""
    images, y = squares()
    loose = LPOMConv(
        ('conv4x3', 'avg2', 'conv4x3bn'),
        input_shape=(1, 8, 8),
        mu=[1.0, 100.0, 100.0],
        max_iter=1,
        batch_size=50,
        random_state=0,
    )
    tight = clone(loose).set_params(rho_max=0.5).fit(images[:100], y[:100])
    assert max(loose.fit(images[:100], y[:100]).rho()) > 1
    assert not all(torch.equal(a, b) for a, b in zip(loose.weights_, tight.weights_))
    with pytest.raises(ValueError, match='rho_max'):
        clone(loose).set_params(rho_max=1.5).fit(images[:100], y[:100])


@pytest.mark.parametrize(
    'architecture, message',
    [
        (('conv4x3', 'max2'), 'max pooling is not linear'),
        (('avg2',), 'must follow a convolution'),
        (('fc8', 'conv4x3'), 'convolutions need images'),
        (('conv4x4',), 'kernel must be odd'),
        (('conv4x3s0',), 'stride must be at least 1'),
        (('conv4x3+x',), "a skip needs the input's shape"),
        (('conv1x3s2+x',), "a skip needs the input's shape"),
        (('bogus',), 'unknown layer'),
        (('conv4x3', 'avg0'), 'pooling window must be between 1'),
        (('conv4x3', 'avg8', 'avg2'), 'must follow a convolution'),
        (('conv4x3s2', 'avg8'), "pooling window must be between 1 and the map's size 4x4"),
        (('conv0x3',), 'at least 1 output channel'),
        (('fc0',), 'at least 1 unit'),
        ('conv4x3', 'a sequence of layer specs'),
    ],
)
def test_bad_architectures_fail_before_any_work(architecture, message):
    with pytest.raises(ValueError, match=message):
        LPOMConv(architecture, input_shape=(1, 8, 8)).fit(np.zeros((4, 64), np.float32), [0, 1, 0, 1])


def test_a_negative_input_shape_is_refused_before_any_work():
    model = LPOMConv(('conv4x3',), input_shape=(1, -8, 8))
    with pytest.raises(ValueError, match='input_shape is'):
        model.fit(np.zeros((4, 64), np.float32), [0, 1, 0, 1])
    assert not any(key.endswith('_') for key in vars(model))


def test_batch_norm_statistics_are_in_the_estimators_and_the_lightning_modules_state():
    """A reload predicts what the trained model predicts: the running statistics travel with the weights."""
    import pickle
    from optnets.recipes.lpom_module import LPOMClassifier

    settings = dict(architecture=['conv4x3bn', 'avg2', 'conv8x3bn', 'avg2'], image_size=12, mu=3.0, rho_max=0.9)
    trained = LPOMClassifier(**settings)
    x, y = torch.rand(20, 1, 12, 12, generator=GEN(1)), torch.randint(0, 10, (20,), generator=GEN(2))
    for _ in range(3):
        trained.lpom.partial_fit(x.flatten(1), y)
    expected = trained.eval()(x)
    reloaded = LPOMClassifier(**settings).eval()
    reloaded.load_state_dict(trained.state_dict())
    assert torch.equal(reloaded(x), expected)
    assert torch.equal(pickle.loads(pickle.dumps(trained.lpom)).forward(x.flatten(1)), expected)
    assert int(trained.state_dict()['running_batches_0']) == 3


def test_input_shape_must_match_the_data():
    with pytest.raises(ValueError, match='input_shape'):
        LPOMConv(('conv4x3',), input_shape=(1, 8, 8)).fit(np.zeros((4, 49), np.float32), [0, 1, 0, 1])


def test_batch_norm_is_a_per_step_affine_map_folded_into_the_weights():
    layer = Conv(2, 3, 3, 2, norm=True)
    weight = torch.randn(3, 19, generator=GEN(), dtype=torch.float64)
    x = torch.randn(8, 2, 6, 6, generator=GEN(1), dtype=torch.float64)
    layer.refresh(weight, x)
    y = layer.apply(weight, x)  # normalized over the batch it was refreshed from
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(y.var((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(layer.unfold_weight(layer.folded(weight)), weight)
    torch.testing.assert_close(
        layer.to_rows(y), torch.addmm(layer.folded(weight)[:, -1], layer.rows(x), layer.folded(weight)[:, :-1].T)
    )


@pytest.mark.parametrize('activation', ['relu', 'sigmoid'])
def test_weight_updates_with_batch_norm_never_increase_the_objective(activation):
    layers, weights, acts, x, target = network(
        architecture=('conv3x3bn', 'avg2', 'conv4x3bn', 'fc5'), activation=activation
    )
    mu = [None, 1.0, 2.0, 1.0, 1.0]
    xs = solver.forward(layers, weights, x, acts, refresh=True)  # the step's statistics, then held fixed
    xs = [xs[0]] + [
        acts[i].phi(v + 0.3 * torch.randn(v.shape, generator=GEN(i), dtype=v.dtype)) for i, v in enumerate(xs[1:])
    ]
    for i in range(len(weights)):
        before = solver.objective(layers, xs, weights, acts, mu, 'cross_entropy', target)
        weights[i] = solver.weight_step(layers[i], weights[i], xs[i], xs[i + 1], acts[i], 3, 1e-6)
        after = solver.objective(layers, xs, weights, acts, mu, 'cross_entropy', target)
        assert after <= before + 1e-9 * abs(before), (i, before, after)
