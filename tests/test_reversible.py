"""Reversible memory: the same outputs, gradients (weights and coefficients) and BN statistics as stored memory,
two iterates saved per stage whatever its depth, and a clear error for what cannot be run backwards."""

import copy

import pytest
import timm
import torch

import optnets
from optnets.compiler import compile_stage
from optnets.compiler import reversible
from optnets.compiler.reversible import ANCHOR_EVERY, NotInvertible

from tests.helpers import randomise_norms

INVERTIBLE = [  # a fixed-coefficient rule (Momentum ResNet) and learnable ones started at the algorithm's values
    ('momentum_net_20_cifar', {}),
    ('hb_net_20_cifar', dict(coeff_init='theory', step_act=False)),
    ('hb_net_20_cifar', dict(coeff_init='theory', step_act=False, coeff_shape='channel', drop_path_rate=0.2)),
]


def pair(name, kwargs, dtype=torch.float64):
    stored = randomise_norms(timm.create_model(name, in_chans=3, **kwargs)).train().to(dtype)
    reversible = timm.create_model(name, memory='reversible', in_chans=3, **kwargs).train().to(dtype)
    reversible.load_state_dict(stored.state_dict())
    return stored, reversible


def step(model, x, seed=0):
    torch.manual_seed(seed)  # drop-path draws the same masks in both
    out = model(x)
    out.square().mean().backward()
    return out.detach()


@pytest.mark.parametrize('name, kwargs', INVERTIBLE)
def test_reversible_equals_stored(name, kwargs):
    stored, reversible = pair(name, kwargs)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(step(reversible, x), step(stored, x), rtol=1e-10, atol=1e-12)
    for (key, p), q in zip(stored.named_parameters(), reversible.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-8, atol=1e-12, msg=key)
    coefficients = [q for _, q in reversible.named_coefficients()]  # Momentum ResNet's gamma is fixed
    assert (name == 'momentum_net_20_cifar') == (not coefficients)
    assert all(q.grad.abs().sum() > 0 for q in coefficients)  # the learnable ones get their gradients
    for (key, a), b in zip(stored.named_buffers(), reversible.buffers()):
        torch.testing.assert_close(b, a, msg=key)  # each batch counted once, although backward re-runs T


@pytest.mark.parametrize(
    'name, kwargs, size, batch, seed',
    [
        ('momentum_net_56_cifar', {}, 32, 4, 0),
        ('momentum_net_20_cifar', dict(steps=(64, 1, 1)), 16, 2, 4),  # BN draws where a float32 carry is 100x off
    ],
)
def test_reversible_float32_gradients_are_as_close_to_float64_as_stored_ones(name, kwargs, size, batch, seed):
    """Dividing by the x[k-1] coefficient in backward, step after step, must not amplify rounding: the sums are
    carried one precision up, and the gradient's error against a float64 run stays at float32's own level, in a
    stage of 8 steps and in one of 64 (past an anchor). Carried in float32 instead, the second case's gradient is
    over 100x further from float64 than the stored network's, with anchors every 16 steps, every 8 or every 4."""
    torch.manual_seed(seed)
    stored, reversible = pair(name, kwargs, torch.float32)
    truth = copy.deepcopy(stored).double()
    x = torch.randn(batch, 3, size, size)
    step(stored, x), step(reversible, x), step(truth, x.double())
    flat = lambda m: torch.cat([p.grad.double().flatten() for p in m.parameters()])  # noqa: E731
    error = lambda m: float((flat(m) - flat(truth)).norm() / flat(truth).norm())  # noqa: E731
    assert error(reversible) < max(10 * error(stored), 1e-5)
    with torch.no_grad():  # without a graph (inference) the output keeps the input's dtype
        out = reversible.eval()(x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, stored.eval()(x), rtol=1e-4, atol=1e-4)


def saved_bytes(model, x) -> int:
    total = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: total.append(t.numel() * t.element_size()) or t, lambda t: t
    ):
        model(x).sum()
    return sum(total)


def test_saved_activations_grow_by_one_anchor_pair_every_anchor_steps():
    """Two iterates a stage whatever its steps, plus one float64 pair (an anchor) every ANCHOR_EVERY steps."""
    x = torch.randn(2, 3, 16, 16)
    saved = {
        steps: saved_bytes(timm.create_model('momentum_net_20_cifar', steps=(steps,) * 3, memory='reversible'), x)
        for steps in (2, ANCHOR_EVERY, ANCHOR_EVERY + 1)
    }
    assert saved[2] == saved[ANCHOR_EVERY]  # no anchor yet: two iterates a stage
    info = timm.create_model('momentum_net_20_cifar').feature_info[1:]
    pair = sum(2 * 8 * 2 * f['num_chs'] * (16 // f['reduction']) ** 2 for f in info)
    assert saved[ANCHOR_EVERY + 1] == saved[2] + pair  # one anchor a stage, at step ANCHOR_EVERY
    stored = saved_bytes(timm.create_model('momentum_net_110_cifar'), x)
    assert saved_bytes(timm.create_model('momentum_net_110_cifar', memory='reversible'), x) < 0.3 * stored


def test_anchored_long_stages_equal_stored(monkeypatch):
    """Anchors every 3 steps in a 10-step stage: rebuilt and anchored steps together give stored's gradients."""
    monkeypatch.setattr(reversible, 'ANCHOR_EVERY', 3)
    stored = (
        randomise_norms(
            timm.create_model('hb_net_20_cifar', steps=(10, 1, 1), coeff_init='theory', step_act=False, in_chans=3)
        )
        .train()
        .double()
    )
    anchored = (
        timm.create_model(
            'hb_net_20_cifar', steps=(10, 1, 1), coeff_init='theory', step_act=False, memory='reversible', in_chans=3
        )
        .train()
        .double()
    )
    anchored.load_state_dict(stored.state_dict())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(step(anchored, x), step(stored, x), rtol=1e-10, atol=1e-12)
    for (key, p), q in zip(stored.named_parameters(), anchored.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-8, atol=1e-12, msg=key)


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda: timm.create_model('hb_net_20_cifar', coeff_init='theory', memory='reversible'), 'ReLU'),
        (lambda: timm.create_model('hb_net_20_cifar', step_act=False, memory='reversible'), 'x[k-1] coefficient is 0'),
        (lambda: timm.create_model('admm_net_56_cifar', step_act=False, memory='reversible'), 'one stream'),
        (
            lambda: compile_stage(
                'x[k+1] = T(x[k]) + 0.5*x[k] + 0.5*x[k-2]', 2, lambda *a: torch.nn.Identity(), 4, memory='reversible'
            ),
            'x[k-2]',
        ),
        (
            lambda: compile_stage('x[k+1] = T(x[k]) + x[k]', 2, lambda *a: torch.nn.Identity(), 4, memory='reversible'),
            'no x[k-1] term',
        ),
        (
            lambda: compile_stage(optnets.rules.agd, 2, lambda *a: torch.nn.Identity(), 4, memory='reversible'),
            'history',
        ),
    ],
)
def test_what_cannot_run_backwards_says_why(make, message):
    with pytest.raises(NotInvertible, match=message.replace('[', r'\[').replace(']', r'\]')):
        make()


@pytest.mark.parametrize('tool', ['torchscript', 'fx'])
def test_tools_that_cannot_capture_reversible_steps_refuse_in_one_line(tool):
    model = timm.create_model('momentum_net_20_cifar', memory='reversible').eval()
    run = {'torchscript': lambda: torch.jit.script(model), 'fx': lambda: torch.fx.symbolic_trace(model)}[tool]
    with pytest.raises(Exception, match="memory='reversible' runs a custom autograd Function") as info:
        run()
    assert "memory='stored'" in str(info.value).splitlines()[0]


def test_torch_compile_runs_reversible_steps_eagerly_and_gives_the_same_gradients():
    stored, model = pair('momentum_net_20_cifar', {}, dtype=torch.float32)
    compiled = torch.compile(copy.deepcopy(model), backend='aot_eager')
    x = torch.randn(2, 3, 32, 32)
    expected, got = step(model, x), step(compiled, x)
    torch.testing.assert_close(got, expected)
    for (name, a), b in zip(model.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)
