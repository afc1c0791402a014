"""The propagation is the optimizer: at ``coeff_init='theory'`` a stage whose tied T is an algorithm's step map
(or its increment, by the rule's stated reading) reproduces that algorithm's iterates.

Each algorithm is written here as its textbook loop, independently of optnets' rules and schedules, on a convex
quadratic and on LASSO (soft-thresholding as the prox), and compared with compiled stages of 1..STEPS steps.
"""

import math

import pytest
import torch
from torch import nn

from optnets import compile_stage, rules

STEPS, N = 24, 6
BETA, ADMM_C = 0.9, 0.5


def quadratic():
    """f(z) = z'Az/2 - b'z with A SPD, and G(z) = z - alpha (Az - b), alpha = 1/L."""
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(N, N, generator=g, dtype=torch.float64))[0]
    a = q @ torch.diag(torch.linspace(0.05, 1.0, N, dtype=torch.float64)) @ q.T
    b = torch.randn(1, N, generator=g, dtype=torch.float64)
    return lambda z: z - (z @ a - b)


def lasso():
    """f(z) = |Mz - y|^2/2 + lam |z|_1, and G(z) = soft(z - alpha M'(Mz - y), alpha lam), alpha = 1/L."""
    g = torch.Generator().manual_seed(1)
    m = torch.randn(2 * N, N, generator=g, dtype=torch.float64)
    y = torch.randn(1, 2 * N, generator=g, dtype=torch.float64)
    alpha, lam = 1 / torch.linalg.matrix_norm(m, 2) ** 2, 0.3

    def step(z):
        u = z - alpha * ((z @ m.T - y) @ m)
        return torch.sign(u) * torch.clamp(u.abs() - alpha * lam, min=0)

    return step


PROBLEMS = {'quadratic': quadratic, 'lasso': lasso}


class StepMap(nn.Module):
    """The algorithm's step G as T (whole-step reading), or G - I (increment reading)."""

    def __init__(self, step, reading: str):
        super().__init__()
        self.step, self.increment = step, reading == 'increment'

    def forward(self, z):
        return self.step(z) - z if self.increment else self.step(z)


def gradient_descent(G, z0, steps):
    zs = [z0]
    for _ in range(steps):
        zs.append(G(zs[-1]))
    return zs


def heavy_ball_momentum_outside_the_prox(G, z0, steps):
    """z+ = G(z) + beta (z - z_prev), G = prox(z - alpha grad f(z)): the momentum is added after the prox. This is
    not the proximal heavy ball of iPiano, prox(z - alpha grad f(z) + beta (z - z_prev)), which puts it inside and
    which no rule with one T per step can write; the two are the same method on a smooth problem (no prox)."""
    zs = [z0, z0]  # z_{-1} = z_0
    for _ in range(steps):
        zs.append(G(zs[-1]) + BETA * (zs[-1] - zs[-2]))
    return zs[1:]


def fista(G, z0, steps):
    """Beck and Teboulle's FISTA: x_k = G(y_k), t_{k+1} = (1 + sqrt(1 + 4 t_k^2))/2,
    y_{k+1} = x_k + (t_k - 1)/t_{k+1} (x_k - x_{k-1}), y_1 = x_0, t_1 = 1."""
    xs, y, t = [z0], z0, 1.0
    for _ in range(steps):
        x = G(y)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = x + (t - 1) / t_next * (x - xs[-1])
        xs.append(x)
        t = t_next
    return xs


def linearised_admm(G, z0, steps):
    """min f(y) + f(x) s.t. y = x, scaled dual u, c = alpha*rho: the consensus (y + x)/2 after each step."""
    y, x, u = z0, z0, torch.zeros_like(z0)
    means = [z0]
    for _ in range(steps):
        y = G(y) - ADMM_C * (y - x + u)
        x = G(x) - ADMM_C * (x - y - u)
        u = u + y - x
        means.append((y + x) / 2)
    return means


def stage_outputs(rule, G, z0, steps, **kwargs):
    """The compiled stage's output after 1..steps steps, with one tied T."""
    T = StepMap(G, rule.reading)
    outputs = [z0]
    for k in range(1, steps + 1):
        stage = compile_stage(
            rule, k, lambda step, stream, widths: T, N, coeff_init='theory', dtype=torch.float64, **kwargs
        )
        with torch.no_grad():
            out = stage(z0)
        outputs.append(out[:, -N:])  # a dense stage returns its whole history: the last block is x[k]
    return outputs


LEMMAS = [  # rule, the algorithm, problems on which the rule is the algorithm exactly, stage arguments
    (rules.gd, gradient_descent, ('quadratic', 'lasso'), {}),
    (rules.heavy_ball, heavy_ball_momentum_outside_the_prox, ('quadratic', 'lasso'), {}),
    (rules.nesterov, fista, ('quadratic', 'lasso'), {}),
    (rules.agd, fista, ('quadratic',), dict(linear_head=False)),  # history form: exact for an affine G
    (rules.admm, linearised_admm, ('quadratic',), {}),
]


@pytest.mark.parametrize(
    'rule, algorithm, problem, kwargs',
    [
        pytest.param(rule, algorithm, problem, kwargs, id=f'{rule.name}-{problem}')
        for rule, algorithm, problems, kwargs in LEMMAS
        for problem in problems
    ],
)  # heavy_ball-lasso: see its loop
def test_theory_coefficients_reproduce_the_algorithm(rule, algorithm, problem, kwargs):
    G = PROBLEMS[problem]()
    z0 = torch.randn(1, N, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = algorithm(G, z0, STEPS)
    got = stage_outputs(rule, G, z0, STEPS, **kwargs)
    for k, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(
            a, b, rtol=0, atol=1e-12, msg=f'{rule.name} on {problem}, step {k}'
        )  # fails for an error of 1e-9
    assert (expected[-1] - expected[1]).abs().max() > 1e-3  # the iterates move: the comparison is not vacuous


def test_the_lemmas_catch_a_coefficient_off_by_1e_9(monkeypatch):
    """The lemma bound (1e-12, float64) is tight enough that heavy ball's theory b1 moved by 1e-9 fails it."""
    monkeypatch.setitem(rules.heavy_ball.inits, 'theory', {'b1': 1 + BETA + 1e-9, 'b2': -BETA})
    with pytest.raises(AssertionError, match='heavy_ball on quadratic'):
        test_theory_coefficients_reproduce_the_algorithm(rules.heavy_ball, *LEMMAS[1][1:2], 'quadratic', {})


def test_theory_values_are_the_derived_coefficients():
    """The documented values, so that a changed constant fails here and in the lemmas."""
    assert rules.heavy_ball.inits['theory'] == {'b1': 1 + BETA, 'b2': -BETA}
    assert rules.admm.inits['theory'] == dict(
        a1=1 - ADMM_C, a2=ADMM_C, a3=ADMM_C, b1=1 - ADMM_C, b2=0.0, b3=ADMM_C, b4=ADMM_C
    )
    assert all(rule.reading for rule in rules.BUILTIN.values())


def test_momentum_resnet_equals_the_momentumnet_package():
    momentumnet = pytest.importorskip('momentumnet')
    torch.manual_seed(0)
    width, steps, gamma = 4, 5, 0.9
    functions = [
        nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.Tanh()) for _ in range(steps)
    ]
    reference = momentumnet.MomentumNet(functions, gamma=gamma, use_backprop=True)
    stage = compile_stage(rules.momentum, steps, lambda k, s, w: functions[k], width, learn_coeffs=False)
    x = torch.randn(2, width, 6, 6)
    torch.testing.assert_close(stage(x), reference(x), rtol=1e-5, atol=1e-5)
    learned = compile_stage(rules.momentum, steps, lambda k, s, w: functions[k], width)
    assert learned.coeff.g.tolist() == pytest.approx([gamma] * steps)  # learnable on request, from gamma
    torch.testing.assert_close(learned(x), reference(x), rtol=1e-5, atol=1e-5)


def test_momentum_theory_is_momentum_resnets_velocity_form():
    """Momentum ResNet (Sander et al. 2021): v <- gamma v + (1 - gamma) f(x), x <- x + v, v_0 = 0, gamma = 0.9,
    written here as its own loop; the compiled rule at coeff_init='theory' is that loop."""
    gamma, f = 0.9, quadratic()
    z0 = torch.randn(1, N, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x, v, expected = z0, torch.zeros_like(z0), [z0]
    for _ in range(STEPS):
        v = gamma * v + (1 - gamma) * f(x)
        x = x + v
        expected.append(x)
    got = [z0]
    for k in range(1, STEPS + 1):
        stage = compile_stage(
            rules.momentum,
            k,
            lambda step, stream, widths: StepMap(f, 'step'),
            N,
            coeff_init='theory',
            dtype=torch.float64,
        )
        with torch.no_grad():
            got.append(stage(z0))
    for k, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f'step {k}')


def multistep_error(c: float, steps: int) -> float:
    """x' = -x from x(0) = 1 to t = 1 by x[k+1] = T(x[k]) + (1 - c) x[k] + c x[k-1] with T = h f (increment
    reading, h = 1/steps): the error at t = 1 against e^-1."""
    h = 1 / steps
    rule = rules.linear_multistep.with_inits(chosen={'c': c})
    stage = compile_stage(
        rule,
        steps,
        lambda step, stream, widths: StepMap(lambda z: z - h * z, 'increment'),
        1,
        coeff_init='chosen',
        dtype=torch.float64,
    )
    with torch.no_grad():
        end = stage(torch.ones(1, 1, dtype=torch.float64))
    return abs(float(end) - math.exp(-1))


def test_linear_multistep_theory_is_the_consistent_method_of_order_one():
    """rho(z) = z^2 - (1 - c) z - c has rho(1) = 0 for any c, and rho'(1) = 1 + c equals sigma(1) = 1 (T's scale)
    only at c = 0: the theory value is the one consistent method (forward Euler), whose error halves with h,
    and any other c does not converge."""
    (c,) = rules.linear_multistep.inits['theory'].values()
    errors = [multistep_error(c, steps) for steps in (20, 40, 80, 160)]
    assert all(1.8 < a / b < 2.2 for a, b in zip(errors, errors[1:]))  # order 1
    assert multistep_error(0.3, 160) > 0.05  # inconsistent: no convergence
