"""Reconstruction networks over deepinv's physics: the theory coefficients are the algorithms (ISTA, FISTA and
linearised ADMM with soft-thresholding, iterate for iterate), the network is deepinv's reconstructor (its ``test``
runs it), the saved state restores it, and the recipe trains it from its shipped config."""

import copy
import math
import pickle
import re

import pytest
import torch
import torch.nn.functional as F

dinv = pytest.importorskip('deepinv', reason='the recon extra: pip install "optnets[recon]"')

import optnets  # noqa: E402
from optnets import rules  # noqa: E402
from optnets.recon import (  # noqa: E402
    ADMM,
    FISTA,
    ISTA,
    ISTANetPlusProx,
    PRESETS,
    ReconNet,
    SoftThreshold,
    admm_net_cs,
    fista_net,
    ista_net,
    ista_net_plus,
)
from optnets.rules.builtin import ADMM_STEP, nesterov_beta  # noqa: E402
from optnets.recon.network import lipschitz as measured_lipschitz  # noqa: E402

LAMBDA = 0.05  # the l1 weight of the LASSO problems below


def problem(seed: int = 0, n: int = 4, dtype: torch.dtype = torch.float32):
    torch.manual_seed(seed)
    physics = dinv.physics.CompressedSensing(
        m=100, img_size=(1, 16, 16), rng=torch.Generator().manual_seed(seed), dtype=dtype
    )
    x = (torch.rand(n, 1, 16, 16) * (torch.rand(n, 1, 16, 16) < 0.2)).to(dtype)  # sparse images
    return physics, x, physics(x)


EXACT = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=0, atol=1e-12)}
"""How close a theory start is to the algorithm's own loop, by dtype: float64 is exact to 1e-12."""


def soft(v, threshold):
    return torch.sign(v) * torch.relu(v.abs() - threshold)


def lasso_network(rule, phases: int, dtype: torch.dtype = torch.float32) -> ReconNet:
    """``rule`` with T a proximal gradient step on LASSO: step 1/L and soft-thresholding at LAMBDA/L."""
    return ReconNet(rule, phases, lambda phase: SoftThreshold(0.0), coeff_init='theory', dtype=dtype)


def set_threshold(net: ReconNet, threshold: float):
    with torch.no_grad():
        for step in net.transforms():  # a DataStep's prox, or the prox itself where the rule writes G
            getattr(step, 'prox', step).theta.fill_(threshold)


def gradient_step(physics, y, z, lipschitz):
    return z - physics.A_adjoint(physics.A(z) - y) / lipschitz


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('rule', [ISTA, rules.gd], ids=['G written out', 'T the whole phase'])
@torch.no_grad()
def test_ista_nets_theory_start_is_ista_iterate_for_iterate(rule, dtype):
    physics, _, y = problem(dtype=dtype)
    net = lasso_network(rule, 6, dtype)
    net(y, physics)  # L is measured on the first forward
    lipschitz = measured_lipschitz(physics, physics.A_adjoint(y))  # measured once, on the first forward
    set_threshold(net, LAMBDA / lipschitz)
    x = physics.A_adjoint(y)
    for _ in range(6):
        x = soft(gradient_step(physics, y, x, lipschitz), LAMBDA / lipschitz)
    torch.testing.assert_close(net(y, physics), x, **EXACT[dtype])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('rule', [FISTA, rules.nesterov], ids=['G written out', 'T the whole phase'])
@torch.no_grad()
def test_fista_nets_theory_start_is_fista_iterate_for_iterate(rule, dtype):
    physics, _, y = problem(1, dtype=dtype)
    net = lasso_network(rule, 6, dtype)
    net(y, physics)
    lipschitz = measured_lipschitz(physics, physics.A_adjoint(y))  # measured once, on the first forward
    set_threshold(net, LAMBDA / lipschitz)
    x = previous = physics.A_adjoint(y)
    for k in range(6):
        point = x + nesterov_beta(k) * (x - previous)
        previous, x = x, soft(gradient_step(physics, y, point, lipschitz), LAMBDA / lipschitz)
    torch.testing.assert_close(net(y, physics), x, **EXACT[dtype])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@torch.no_grad()
def test_admm_nets_theory_start_is_linearised_admm_iterate_for_iterate(dtype):
    """rules.admm's theory with T the increment of G = prox-gradient step: ``y+ = G(y) - c (y - x + u)``,
    ``x+ = G(x) - c (x - y+ - u)``, ``u+ = u + y+ - x+``; the output is the streams' mean."""
    physics, _, y = problem(2, dtype=dtype)
    net = lasso_network(rules.admm, 5, dtype)
    net(y, physics)
    lipschitz = measured_lipschitz(physics, physics.A_adjoint(y))  # measured once, on the first forward
    set_threshold(net, LAMBDA / lipschitz)
    step = lambda z: soft(gradient_step(physics, y, z, lipschitz), LAMBDA / lipschitz)  # noqa: E731
    a = b = physics.A_adjoint(y)
    u, c = torch.zeros_like(a), ADMM_STEP
    for _ in range(5):
        a = step(a) - c * (a - b + u)
        b = step(b) - c * (b - a - u)
        u = u + a - b
    torch.testing.assert_close(net(y, physics), (a + b) / 2, **EXACT[dtype])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@torch.no_grad()
def test_admm_nets_rule_with_the_dual_in_g_is_admm_iterate_for_iterate(dtype):
    """ADMM's theory with T the prox (soft-thresholding): ``x+ = v - (1/L) A^T(A v - y)`` at ``v = z - u``,
    ``z+ = soft(x+ + u)``, ``u+ = u + x+ - z+`` from ``x = z = A^T y``, ``u = 0``; the output is ``(x + z)/2``."""
    physics, _, y = problem(5, dtype=dtype)
    net = lasso_network(ADMM, 6, dtype)
    net(y, physics)
    lipschitz = measured_lipschitz(physics, physics.A_adjoint(y))
    set_threshold(net, LAMBDA / lipschitz)
    x = z = physics.A_adjoint(y)
    u = torch.zeros_like(x)
    for _ in range(6):
        x = gradient_step(physics, y, z - u, lipschitz)
        z = soft(x + u, LAMBDA / lipschitz)
        u = u + x - z
    torch.testing.assert_close(net(y, physics), (x + z) / 2, **EXACT[dtype])


def test_admm_net_has_one_prox_a_phase_and_ista_net_plus_parameters():
    """ADMM-Net's x-update reads G alone: only its z stream owns a T, so it has ISTA-Net+'s parameters plus its
    two coefficients a phase."""
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(admm_net_cs(phases=3)) == count(ista_net_plus(phases=3)) + 3
    assert [s.applies_t for s in optnets.compiler.compile_rule(ADMM).streams] == [False, True]


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_every_preset_reconstructs_trains_and_round_trips_its_state(name, tmp_path):
    physics, x, y = problem(3)
    net = getattr(__import__('optnets.recon', fromlist=[name]), name)(phases=2, features=4)
    out = net(y, physics)
    assert out.shape == x.shape and torch.isfinite(out).all()
    ((out - x) ** 2).mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    torch.save(net.state_dict(), tmp_path / 'state.pt')
    again = getattr(__import__('optnets.recon', fromlist=[name]), name)(phases=2, features=4)
    again.load_state_dict(torch.load(tmp_path / 'state.pt', weights_only=True))
    net.eval(), again.eval()
    copied = pickle.loads(pickle.dumps(copy.deepcopy(net)))  # as torch.save(model) and EMA copies do
    with torch.no_grad():
        torch.testing.assert_close(again(y, physics), net(y, physics), rtol=0, atol=0)
        torch.testing.assert_close(copied(y, physics), net(y, physics), rtol=0, atol=0)


def test_deepinv_tests_the_network_as_its_own_reconstructor():
    physics, x, _ = problem(4, n=8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(8)), batch_size=4)
    metrics = dinv.test(
        ista_net_plus(phases=2, features=4).eval(),
        loader,
        physics,
        metrics=[dinv.loss.PSNR()],
        online_measurements=True,
        show_progress_bar=False,
        verbose=False,
    )
    assert math.isfinite(metrics['PSNR']) and math.isfinite(metrics['PSNR no learning'])


def test_a_dense_rule_and_a_stage_called_without_its_data_are_refused():
    with pytest.raises(ValueError, match='dense rule'):
        ReconNet(rules.agd, 2, lambda phase: SoftThreshold())
    net = ista_net(phases=1, features=4)
    with pytest.raises(RuntimeError, match=r'stage\(x, data\)'):
        net.stage(torch.zeros(1, 1, 4, 4))  # G(...) with no measurements
    with pytest.raises(RuntimeError, match=r'stage\(x, data\), as a reconstruction network'):
        optnets.compile_stage(ISTA, 1, lambda step, stream, widths: torch.nn.Identity(), 1)(torch.zeros(1, 1, 2, 2))


def test_fista_net_learns_its_extrapolation_from_fistas():
    net = fista_net(phases=4, features=4)
    b1, b2 = net.stage.coeff.b1, net.stage.coeff.b2
    assert b1.requires_grad and b2.requires_grad
    torch.testing.assert_close(b1.detach(), torch.tensor([1 + nesterov_beta(k) for k in range(4)]))
    torch.testing.assert_close(b2.detach(), torch.tensor([-nesterov_beta(k) for k in range(4)]))


def test_the_step_sizes_are_the_data_terms_coefficients_or_each_phases_own():
    for build in (ista_net, ista_net_plus, fista_net, admm_net_cs):
        net = build(3)
        assert [id(p) for p in net.step_sizes()] == [id(net.stage.coeff.a)]  # not FISTA's b1, b2 or ADMM's c
    net = ReconNet(rules.admm, 3, lambda phase: ISTANetPlusProx(1, 4))  # no G: each T a whole phase
    steps = [t.step_size for t in net.transforms()]
    assert len(steps) == 6 and [id(p) for p in net.step_sizes()] == [id(p) for p in steps]


@pytest.mark.parametrize('step_lr', ['lipschitz', 'common'])
def test_the_cs_recipe_learns_the_raw_step_at_the_learning_rate_as_deepinv_does(step_lr):
    """Adam's first step moves a parameter by its learning rate: with ``step_lr='lipschitz'`` the step ``a`` (in
    units of 1/L) moves by L times it, so the raw step a/L moves by the learning rate, as deepinv's own does."""
    from optnets.recipes.recon_module import ReconModule

    torch.manual_seed(0)
    module = ReconModule(phases=2, features=4, lr=1e-3, step_lr=step_lr)
    optimizer = module.configure_optimizers()
    before = module.model.stage.coeff.a.detach().clone()
    x = torch.rand(4, 1, 28, 28)
    F.mse_loss(module(module.physics(x)), x).backward()
    optimizer.step()
    raw_move = (module.model.stage.coeff.a.detach() - before).abs() / measured_lipschitz(module.physics, x)
    expected = 1e-3 if step_lr == 'lipschitz' else 1e-3 / measured_lipschitz(module.physics, x)
    torch.testing.assert_close(raw_move, torch.full_like(raw_move, expected), rtol=1e-3, atol=0)


def test_the_cs_recipe_trains_validates_tests_and_reloads_from_its_checkpoint(tmp_path):
    from optnets.recipes.recon_module import ReconModule
    from optnets.recipes.train import cli_main

    cli = cli_main(
        [
            'fit',
            '--config',
            'cs_fashion_mnist',
            '--data.train_subset',
            '64',
            '--data.holdout',
            '32',
            '--data.batch_size',
            '16',
            '--data.num_workers',
            '0',
            '--model.init_args.phases',
            '2',
            '--model.init_args.features',
            '4',
            '--trainer.max_epochs',
            '1',
            '--trainer.enable_progress_bar',
            'false',
            '--trainer.default_root_dir',
            str(tmp_path),
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(float(metrics['val/psnr'])) and 0 < float(metrics['val/ssim']) <= 1
    assert cli.model.physics.A(torch.zeros(1, 1, 28, 28)).shape == (1, 196)  # 25% of the 784 pixels
    x, _ = next(iter(cli.datamodule.val_dataloader()))
    assert 0 <= float(x.min()) and float(x.max()) <= 1  # the images themselves, not standardised
    best = next((tmp_path / 'checkpoints').glob('best-*.ckpt'))
    again = ReconModule.load_from_checkpoint(best, weights_only=True).eval()
    cli.model.eval()
    y = cli.model.physics(x)
    with torch.no_grad():
        torch.testing.assert_close(again(y), cli.model(y), rtol=0, atol=0)
    (result,) = cli.trainer.test(cli.model, dataloaders=cli.datamodule.val_dataloader(), verbose=False)
    assert math.isfinite(result['test/psnr'])


def test_deepinv_trains_the_network_with_its_own_trainer(tmp_path):
    physics, x, _ = problem(5, n=8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(8)), batch_size=4)
    model = ista_net_plus(phases=2, features=4)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = dinv.Trainer(
        model,
        physics,
        torch.optim.Adam(model.parameters(), lr=1e-3),
        loader,
        epochs=1,
        online_measurements=True,
        save_path=str(tmp_path),
        show_progress_bar=False,
        verbose=False,
    )
    trained = trainer.train()
    assert trained is model or isinstance(trained, ReconNet)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize(
    'bad, message',
    [
        (lambda y, physics: (y, None), 'physics must be a deepinv Physics, not NoneType'),
        (lambda y, physics: (y.numpy(), physics), 'must be a tensor, not ndarray'),
        (lambda y, physics: (y.index_fill(1, torch.tensor([3]), float('nan')), physics), 'hold NaN or inf'),
        (lambda y, physics: (y.index_fill(1, torch.tensor([3]), float('inf')), physics), 'hold NaN or inf'),
        (lambda y, physics: (y[:, :50], physics), 'measurements of shape (4, 50) do not fit the physics'),
        (lambda y, physics: (y.reshape(4, 1, 100), physics), 'measurements of shape (4, 1, 100) do not fit'),
    ],
    ids=['no physics', 'not a tensor', 'nan', 'inf', 'too few', 'wrong rank'],
)
def test_bad_measurements_or_physics_are_one_clear_error(bad, message):
    physics, _, y = problem()
    net = ista_net(phases=2)
    with pytest.raises(ValueError, match=re.escape(message)):
        net(*bad(y, physics))
    assert torch.isfinite(net(y, physics)).all()  # nothing was left behind by the refused call


def test_the_lipschitz_constant_is_the_largest_eigenvalue_of_a_transpose_a():
    """L = ||A^T A||_2, against the matrix itself: A applied to the identity basis, its top singular value squared."""
    from optnets.recon.network import squared_norm

    physics, x, _ = problem(n=1)
    basis = torch.eye(16 * 16).reshape(-1, 1, 16, 16)
    matrix = physics.A(basis).reshape(16 * 16, -1).T  # A as an m x n matrix
    expected = torch.linalg.matrix_norm(matrix, ord=2).item() ** 2
    assert squared_norm(physics, x) == pytest.approx(expected, rel=1e-4)


def test_ista_net_plus_prox_is_its_input_plus_a_residual_branch():
    """ISTA-Net+'s x = r + H(F~(soft(F(D r)))): with the branch's last map at zero the prox is the identity, and
    otherwise its output minus its input is the branch alone."""
    from optnets.recon.prox import ISTANetPlusProx

    torch.manual_seed(0)
    prox, r = ISTANetPlusProx(features=8).eval(), torch.randn(2, 1, 16, 16)
    branch = prox.project(prox.backward_transform(prox.threshold(prox.forward_transform(prox.lift(r)))))
    with torch.no_grad():
        torch.testing.assert_close(prox(r) - r, branch, rtol=1e-5, atol=1e-6)
        prox.project.weight.zero_()
        assert torch.equal(prox(r), r)


@pytest.mark.parametrize('rule', [ISTA, rules.gd], ids=['G written out', 'T the whole phase'])
@torch.no_grad()
def test_two_threads_reconstruct_at_once_as_one_after_the_other(rule):
    """The data is an argument of the stage, never state set around a call: one network, two physics, two threads
    started together give the outputs of two calls in turn, and no attribute of any module changes in a forward."""
    import threading

    net = lasso_network(rule, 4)
    set_threshold(net, 0.01)
    (physics_a, _, y_a), (physics_b, _, y_b) = problem(seed=1), problem(seed=2)
    expected = [net(y_a, physics_a), net(y_b, physics_b)]
    attributes = {name: dict(vars(m)) for name, m in net.named_modules()}
    outputs, start = [None, None], threading.Barrier(2)

    def reconstruct(i, y, physics):
        start.wait()
        for _ in range(20):
            outputs[i] = net(y, physics)

    threads = [threading.Thread(target=reconstruct, args=a) for a in ((0, y_a, physics_a), (1, y_b, physics_b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(outputs, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert {name: dict(vars(m)) for name, m in net.named_modules()} == attributes


@pytest.mark.parametrize('rule', [ISTA, rules.gd], ids=['G written out', 'T the whole phase'])
def test_torch_export_takes_the_measurements_as_an_input(rule):
    """torch.export sees the data: the exported program takes y as its input (the physics, a Python object, is
    fixed at export, as any module attribute is) and reconstructs as the network does from other measurements."""
    net = lasso_network(rule, 3).eval()
    set_threshold(net, 0.01)
    physics, _, y = problem(seed=3)

    class FixedPhysics(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, y):
            return self.net(y, physics)

    measured_lipschitz(physics, physics.A_adjoint(y))  # measured before export: tracing runs no power method
    exported = torch.export.export(FixedPhysics(), (y,))
    other = physics(problem(seed=4)[1])
    torch.testing.assert_close(exported.module()(other), net(other, physics))
