"""The method's key lemma: a layer x[k+1] = phi(W x[k]) with W = U^2 is gradient descent with step 1 on
f(z) = 1/2 ||z||^2 - 1'Phi(U z), in z = U x, for each activation of the method's table."""

import pytest
import torch
import torch.nn.functional as F

import optnets
from optnets.layer_objective import ANTIDERIVATIVES, PARAMETRISED, li2_of_minus_exp

PHI = {
    'sigmoid': torch.sigmoid,
    'tanh': torch.tanh,
    'softplus': F.softplus,
    'softsign': F.softsign,
    'relu': torch.relu,
    'leaky_relu': lambda t: F.leaky_relu(t, 0.01),
    'elu': F.elu,
    'swish': F.silu,
}


def symmetric_root(seed: int, n: int = 6) -> torch.Tensor:
    """A symmetric positive definite U with eigenvalues in [0.3, 1.1], so W = U^2 is SPD too."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.rand(n, generator=gen, dtype=torch.float64) * 0.8 + 0.3) @ q.T


def test_every_activation_of_the_table_has_its_antiderivative():
    assert set(ANTIDERIVATIVES) == set(PHI)


@pytest.mark.parametrize('activation', list(PHI))
def test_the_antiderivative_differentiates_to_the_activation(activation):
    t = torch.linspace(-12, 12, 2001, dtype=torch.float64, requires_grad=True)
    value = ANTIDERIVATIVES[activation](t)
    (slope,) = torch.autograd.grad(value.sum(), t)
    torch.testing.assert_close(slope, PHI[activation](t.detach()), rtol=1e-10, atol=1e-12)
    assert ANTIDERIVATIVES[activation](torch.zeros(1, dtype=torch.float64)).abs().item() < 1e-14


@pytest.mark.parametrize('activation', list(PHI))
def test_a_gradient_step_on_f_is_the_layer(activation):
    U = symmetric_root(0)
    f = optnets.layer_objective(activation, U)
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    point = z.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(f(point), point)
    torch.testing.assert_close(z - gradient, PHI[activation](z @ U) @ U, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('activation', list(PHI))
def test_twenty_layers_are_twenty_gradient_descent_steps(activation):
    U = symmetric_root(2)
    W = U @ U
    f = optnets.layer_objective(activation, U)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = x @ U
    for _ in range(20):
        x = PHI[activation](x @ W)  # W symmetric: rows (W x)^T = x^T W
        point = z.clone().requires_grad_()
        (gradient,) = torch.autograd.grad(f(point), point)
        z = z - gradient
        torch.testing.assert_close(z, x @ U, rtol=1e-9, atol=1e-11)


def test_the_dilogarithm_against_its_values():
    """Li2(-1) = -pi^2/12; Li2(-e^t) + Li2(-e^-t) = -pi^2/6 - t^2/2; and its defining series where it converges fast."""
    import math

    t = torch.tensor([0.0, 1.0, 3.0, -2.5], dtype=torch.float64)
    assert li2_of_minus_exp(t[:1]).item() == pytest.approx(-(math.pi**2) / 12, abs=1e-15)
    torch.testing.assert_close(li2_of_minus_exp(t) + li2_of_minus_exp(-t), -(math.pi**2) / 6 - t**2 / 2)
    x = -math.exp(-2.5)
    assert li2_of_minus_exp(t[3:]).item() == pytest.approx(sum(x**k / k**2 for k in range(1, 200)), abs=1e-15)


def test_a_matrix_that_is_not_symmetric_is_refused():
    with pytest.raises(ValueError, match='symmetric'):
        optnets.layer_objective('relu', torch.tensor([[1.0, 2.0], [0.0, 1.0]]))


@pytest.mark.parametrize('activation, alpha, phi', [('leaky_relu', 0.2, F.leaky_relu), ('elu', 0.5, F.elu)])
def test_a_parametrised_activation_takes_its_alpha(activation, alpha, phi):
    U = symmetric_root(4)
    f = optnets.layer_objective(activation, U, alpha=alpha)
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 3
    point = z.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(f(point), point)
    torch.testing.assert_close(z - gradient, phi(z @ U, alpha) @ U, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match='tanh has no parameter'):
        optnets.layer_objective('tanh', U, alpha=0.5)


# The talk's Table 1, entry by entry, against the forms here (docs/rules.md, "The talk's table and ours").
T = torch.linspace(-4, 4, 801, dtype=torch.float64)


def slope(antiderivative, t=T):
    t = t.clone().requires_grad_()
    (grad,) = torch.autograd.grad(antiderivative(t).sum(), t)
    return grad


def test_the_talks_leaky_relu_objective_has_slope_alpha_squared_and_ours_alpha():
    alpha = 0.2
    talks = lambda t: torch.where(t >= 0, t, alpha * alpha * t) * t / 2  # noqa: E731  alpha^2 t^2 / 2 below 0
    negative = T < 0
    torch.testing.assert_close(slope(talks)[negative], alpha**2 * T[negative])  # the layer would be alpha^2 t
    assert not torch.allclose(slope(talks), F.leaky_relu(T, alpha))
    torch.testing.assert_close(slope(PARAMETRISED['leaky_relu'](alpha)), F.leaky_relu(T, alpha))


def test_the_talks_softsign_objective_is_undefined_below_zero_and_ours_everywhere():
    talks = lambda t: -t - torch.log(t - 1)  # noqa: E731
    assert torch.isnan(talks(T[T <= 0])).all()
    ours = ANTIDERIVATIVES['softsign']
    assert torch.isfinite(ours(T)).all()
    torch.testing.assert_close(slope(ours), F.softsign(T), rtol=1e-10, atol=1e-12)


def test_the_elu_objective_without_its_constant_jumps_at_zero_and_ours_is_continuous():
    alpha, eps = 1.0, torch.tensor([1e-12], dtype=torch.float64)
    jumping = lambda t: torch.where(t >= 0, t**2 / 2, alpha * (torch.exp(t) - t))  # noqa: E731  alpha(e^t - t)
    assert (jumping(-eps) - jumping(eps)).item() == pytest.approx(alpha)  # a jump of alpha at 0
    ours = ANTIDERIVATIVES['elu']
    assert abs((ours(-eps) - ours(eps)).item()) < 1e-11
