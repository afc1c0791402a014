"""The timm zoo: every name builds and trains, ResNet/DenseNet load exactly, presets have the paper's sizes."""

import math
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

import optnets

from tests.helpers import randomise_norms

NAMES = timm.list_models(module=list(optnets.models.FAMILIES))
REQUIRED = {
    'gd_net_56_cifar',
    'hb_net_20_cifar',
    'hb_net_56_cifar',
    'hb_net_110_cifar',
    'agd_net_40_cifar',
    'agd_net_52_cifar',
    'admm_net_56_cifar',
    'gd_net_34',
    'hb_net_18',
    'hb_net_34',
    'hb_net_50',
    'hb_net_101',
    'agd_net_121',
    'agd_net_169',
    'agd_net_201',
    'admm_net_34',
    'admm_net_50',
}


def small_input(model, batch=2):
    channels, height, _ = model.pretrained_cfg['input_size']  # timm < 1.0.31 wrappers have no in_chans
    size = 32 if height == 32 else 64
    return torch.randn(batch, channels, size, size)


def coefficient_count(model):
    return sum(p.numel() for _, p in model.named_coefficients())


def test_required_names_are_registered():
    assert REQUIRED <= set(NAMES)
    for name in NAMES:
        assert timm.get_pretrained_cfg(name) is not None


@pytest.mark.parametrize('name', NAMES)
def test_builds_trains_and_round_trips(name):
    model = timm.create_model(name, num_classes=7, drop_rate=0.1)
    x = small_input(model)
    out = model(x)
    assert out.shape == (2, 7)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    clone = timm.create_model(name, num_classes=7).eval()
    clone.load_state_dict(model.state_dict())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)


def save_safetensors(model, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


@pytest.mark.parametrize('source, target', [('resnet34', 'hb_net_34'), ('densenet121', 'agd_net_121')])
def test_timm_checkpoint_gives_the_same_logits(source, target, tmp_path):
    reference = randomise_norms(timm.create_model(source))
    file = save_safetensors(reference, tmp_path / f'{source}.safetensors')
    model = timm.create_model(target, pretrained=True, pretrained_cfg_overlay=dict(file=file)).eval()
    assert coefficient_count(model) > 0  # learnable, at their special values
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('source, target', [('resnet18', 'hb_net_18'), ('densenet121', 'agd_net_121')])
def test_torchvision_checkpoint_gives_the_same_logits(source, target, tmp_path):
    reference = randomise_norms(getattr(torchvision.models, source)())
    file = tmp_path / f'{source}.pth'
    torch.save(reference.state_dict(), file)
    model = timm.create_model(target, pretrained=True, pretrained_cfg_overlay=dict(file=str(file))).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_fixed_coefficients_are_the_special_case():
    learned = timm.create_model('hb_net_56_cifar')
    fixed = timm.create_model('hb_net_56_cifar', learn_coeffs=False)
    assert coefficient_count(fixed) == 0 and coefficient_count(learned) == 3 * 8 * 2
    assert 'coeff' not in fixed.stages[1].code
    x = torch.randn(2, 3, 32, 32)
    randomise_norms(learned)
    coefficients = dict(learned.named_coefficients())
    fixed.eval().load_state_dict({k: v for k, v in learned.state_dict().items() if k not in coefficients})
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), learned(x), rtol=0, atol=1e-6)


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def test_cifar_presets_have_the_papers_sizes():
    resnet56 = param_count(timm.create_model('hb_net_56_cifar', learn_coeffs=False))
    densenet40 = param_count(timm.create_model('agd_net_40_cifar', learn_coeffs=False))
    assert 0.84e6 < resnet56 < 0.87e6
    assert 0.99e6 < densenet40 < 1.05e6
    assert param_count(timm.create_model('hb_net_56_cifar')) == resnet56 + 48


@pytest.mark.parametrize(
    'name, baseline',
    [
        ('hb_net_18', 'resnet18'),
        ('hb_net_34', 'resnet34'),
        ('hb_net_50', 'resnet50'),
        ('hb_net_101', 'resnet101'),
        ('agd_net_121', 'densenet121'),
        ('agd_net_169', 'densenet169'),
        ('agd_net_201', 'densenet201'),
    ],
)
def test_imagenet_presets_add_only_coefficients(name, baseline):
    model = timm.create_model(name, device='meta')
    reference = timm.create_model(baseline, device='meta')
    assert param_count(model) == param_count(reference) + coefficient_count(model)


def flops(model, size=224):
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, size, size, device='meta'))
    return counter.get_total_flops()


@pytest.mark.parametrize('name, baseline', [('admm_net_34', 'resnet34'), ('admm_net_50', 'resnet50')])
def test_dual_stream_presets_are_sized_like_their_resnet(name, baseline):
    model, reference = (timm.create_model(n, device='meta').eval() for n in (name, baseline))
    assert abs(param_count(model) / param_count(reference) - 1) < 0.10
    assert abs(flops(model) / flops(reference) - 1) < 0.10


@pytest.mark.parametrize('name', ['hb_net_20_cifar', 'agd_net_121', 'admm_net_34'])
def test_features_only(name):
    model = timm.create_model(name, features_only=True).eval()
    x = small_input(model, batch=1)
    features = model(x)
    assert [f.shape[1] for f in features] == model.feature_info.channels()
    assert [x.shape[-1] // f.shape[-1] for f in features] == model.feature_info.reduction()


def test_timm_api():
    model = timm.create_model('hb_net_20_cifar', in_chans=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert len(intermediates) == 4
        assert model.forward_head(final, pre_logits=True).shape == (2, 64)
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), model.forward_head(final))
        torch.testing.assert_close(model.forward_intermediates(x)[0], final)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.get_classifier().out_features == 3
    assert set(model.no_weight_decay()) == {n for n, _ in model.named_parameters() if '.coeff.' in n} != set()
    with pytest.raises(TypeError):
        timm.create_model('hb_net_20_cifar', not_an_argument=1)


@pytest.mark.parametrize('name', ['hb_net_20_cifar', 'admm_net_56_cifar', 'momentum_net_20_cifar'])
def test_drop_path_rate_is_timms_stochastic_depth(name):
    """timm's schedule (linear in block depth up to the rate), random in training, off in eval, no new weights."""
    plain = randomise_norms(timm.create_model(name, in_chans=3))  # live transforms (zero_init_last silences them)
    model = timm.create_model(name, drop_path_rate=0.2, in_chans=3)
    rates = {m.drop_prob for m in model.modules() if isinstance(m, timm.layers.DropPath)}
    blocks = sum(1 + stage.steps for stage in model.stages)  # a transition and the steps (all streams alike)
    assert sorted(rates) == pytest.approx([0.2 * i / (blocks - 1) for i in range(1, blocks)])  # block 0: rate 0
    assert model.state_dict().keys() == plain.state_dict().keys()
    model.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain(x), rtol=0, atol=0)
        torch.manual_seed(0)
        assert not torch.equal(model.train()(x), model(x))
    with pytest.raises(TypeError, match='drop_path_rate'):  # as timm's DenseNet: dense layers take proj_drop_rate
        timm.create_model('agd_net_40_cifar', drop_path_rate=0.1)


@pytest.mark.parametrize('name', ['hb_net_20_cifar', 'agd_net_40_cifar', 'admm_net_56_cifar'])
def test_model_fuse_keeps_outputs(name):
    model = randomise_norms(timm.create_model(name, coeff_init='theory', in_chans=3))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert coefficient_count(model) == 0


@pytest.mark.parametrize('init', ['special', 'theory'])
@pytest.mark.parametrize('shape', ['scalar', 'channel'])
def test_coefficient_options(init, shape):
    model = timm.create_model('hb_net_20_cifar', coeff_init=init, coeff_shape=shape, in_chans=1)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    b1 = model.stages[0].coeff.b1
    assert b1.shape == ((2,) if shape == 'scalar' else (2, 16, 1, 1))
    assert b1.flatten()[0].item() == pytest.approx(1.0 if init == 'special' else 1.9)  # 1 + beta: increment reading


def test_register_a_custom_rule():
    entry = optnets.register(
        'multistep_net_20_cifar', 'x[k+1] = T(x[k]) + (1-c)*x[k] + c*x[k-1]', depth=20, special={'c': 0.0}
    )
    assert entry.__name__ in timm.list_models('multistep_*')
    model = timm.create_model('multistep_net_20_cifar', num_classes=4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert {n.split('.')[-1] for n, _ in model.named_coefficients()} == {'c'}
    with pytest.raises(ValueError, match='6n\\+2'):
        optnets.register('bad_depth', 'x[k+1] = T(x[k])', depth=21)
    with pytest.raises(optnets.RuleError):
        optnets.register('bad_rule', 'x[k+1] = T(x[k]')


def test_each_skeleton_takes_only_its_own_arguments_and_rules():
    """ResNet's and DenseNet's skeletons are separate builders: neither silently ignores the other's settings."""
    from optnets.models import DenseOptNet, OptNet, ResidualOptNet

    assert OptNet.for_rule(optnets.rules.agd) is DenseOptNet and OptNet.for_rule('x[k+1] = T(x[k])') is ResidualOptNet
    with pytest.raises(TypeError, match='widths'):
        timm.create_model('agd_net_40_cifar', widths=(8, 8, 8))
    with pytest.raises(TypeError, match='growth_rate'):
        timm.create_model('hb_net_20_cifar', growth_rate=8)
    with pytest.raises(ValueError, match='builds a DenseOptNet'):
        ResidualOptNet(optnets.rules.agd, steps=(1,))
    with pytest.raises(ValueError, match='builds a ResidualOptNet'):
        DenseOptNet(optnets.rules.heavy_ball, steps=(1,))


def test_a_registered_plain_rule_without_shortcuts_is_gd_nets_skeleton():
    """register(..., shortcut=False) leaves out the transitions' shortcuts too: gradient descent's rule is then
    gd_net's plain CNN, module for module; by default the three transitions keep ResNet's."""
    optnets.register('plain_rule_56_cifar', 'x[k+1] = T(x[k])', depth=56, shortcut=False)
    optnets.register('transition_skips_56_cifar', 'x[k+1] = T(x[k])', depth=56)
    shortcuts = lambda m: [t.shortcut for t in m.modules() if type(t).__name__ == 'ResidualTransition']  # noqa: E731
    plain, gd = timm.create_model('plain_rule_56_cifar'), timm.create_model('gd_net_56_cifar')
    assert shortcuts(plain) == shortcuts(gd) == [False, False, False]
    assert shortcuts(timm.create_model('transition_skips_56_cifar')) == [True, True, True]
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in gd.state_dict().items()}
    plain.load_state_dict(randomise_norms(gd).state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), gd(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match='no shortcut to leave out'):
        optnets.register('dense_plain_40_cifar', optnets.rules.agd, depth=40, shortcut=False)


def test_register_a_dense_rule_on_the_imagenet_skeleton():
    """A rule summing T over the history gets DenseNet-121's skeleton: its parameters plus the coefficients."""
    optnets.register('dense_sum_net_121', 'x[k+1] = sum_j a[j]*T(x[j])', preset='imagenet', depth=121)
    model = timm.create_model('dense_sum_net_121', device='meta')
    densenet = timm.create_model('densenet121', device='meta')
    steps = [stage.steps for stage in model.stages]
    assert steps == [
        len(block)
        for block in (
            densenet.features.denseblock1,
            densenet.features.denseblock2,
            densenet.features.denseblock3,
            densenet.features.denseblock4,
        )
    ]
    triangle = sum(n * (n + 1) // 2 for n in steps)  # a[j] per (step k, history entry j <= k)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in densenet.parameters()) + triangle
    with pytest.raises(ValueError, match='ImageNet DenseNet depths'):
        optnets.register('dense_sum_net_122', 'x[k+1] = sum_j a[j]*T(x[j])', preset='imagenet', depth=122)


@pytest.mark.parametrize('depth', [18, 34, 50, 101, 152])
def test_resnet_presets_are_timms_blocks_per_stage(depth):
    """The presets' steps are timm's resnet blocks per stage minus the transition, read from timm's own model."""
    from optnets.models.presets import resnet

    reference = timm.create_model(f'resnet{depth}', device='meta')
    layers = [len(getattr(reference, f'layer{i}')) for i in range(1, 5)]
    assert [1 + steps for steps in resnet(depth)['steps']] == layers
    assert (resnet(depth).get('block', 'basic') == 'bottleneck') == (type(reference.layer1[0]).__name__ == 'Bottleneck')


@pytest.mark.parametrize('name', NAMES)
def test_torch_save_round_trips_every_model(name, tmp_path):
    model = timm.create_model(name).eval()
    torch.save(model, tmp_path / 'model.pt')
    loaded = torch.load(tmp_path / 'model.pt', weights_only=False)
    x = small_input(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    'name',
    [
        'gd_net_56_cifar',
        'hb_net_20_cifar',
        'agd_net_40_cifar',
        'admm_net_56_cifar',
        'momentum_net_20_cifar',
        'lm_net_20_cifar',
    ],
)
@pytest.mark.parametrize('grad', [True, False])
def test_flop_counter_works_with_and_without_grad(name, grad):
    model = timm.create_model(name, in_chans=3).eval()
    with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 32, 32))
    assert counter.get_total_flops() > 0


FAMILY_MEMBERS = [
    'gd_net_56_cifar',
    'hb_net_20_cifar',
    'agd_net_40_cifar',
    'admm_net_56_cifar',
    'momentum_net_20_cifar',
    'lm_net_20_cifar',
]
for _name, _rule in optnets.rules.BUILTIN.items():  # every built-in through register(), on the smallest preset
    optnets.register(f'alive_{_name}', _rule, depth=16 if _rule is optnets.rules.agd else 20)
ALIVE_GRID = [
    (name, init, shape)
    for name in FAMILY_MEMBERS + [f'alive_{n}' for n in optnets.rules.BUILTIN]
    for init in ('special', 'theory')
    for shape in ('scalar', 'channel')
    if not (shape == 'channel' and 'agd' in name)
]


@pytest.mark.parametrize('name, init, shape', ALIVE_GRID)
def test_every_family_is_alive_at_init(name, init, shape):
    """No dead network: each stage's output varies over a batch, and 20 SGD steps lower the loss on a small batch
    with balanced labels below what constant features allow (the classifier's bias alone cannot beat log(4))."""
    torch.manual_seed(0)
    model = timm.create_model(name, coeff_init=init, coeff_shape=shape, num_classes=4, in_chans=3)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 4
    for feature in model.forward_intermediates(x, intermediates_only=True)[1:]:
        assert feature.std(0).max() > 1e-3, 'a stage output is constant over the batch'
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * math.log(4) and losses[-1] < losses[0]


@pytest.mark.parametrize('name', NAMES)
def test_builds_on_the_meta_device_context(name):
    """timm builds models under ``with torch.device('meta')``; fixed coefficients must not touch tensor data."""
    with torch.device('meta'):
        model = timm.create_model(name, learn_coeffs=False)
    assert all(p.is_meta for p in model.parameters())


def test_torch_hub_loads_every_model_from_the_repository(tmp_path):
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location('hubconf', repo / 'hubconf.py')
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith('_')]
    assert sorted(entries) == sorted(NAMES)  # what torch.hub.list shows for a GitHub repository
    repo = str(repo)
    x = torch.randn(2, 1, 32, 32)
    for tag in ('fmnist', 'fmnist_resnet'):  # shipped tags: no download
        model = torch.hub.load(repo, 'hb_net_20_cifar', source='local', pretrained=True, pretrained_cfg=tag).eval()
        reference = timm.create_model(f'hb_net_20_cifar.{tag}', pretrained=True).eval()
        with torch.no_grad():
            assert torch.equal(model(x), reference(x))
    default = torch.hub.load(repo, 'hb_net_20_cifar', source='local', pretrained=True)  # the first tag, as timm's
    assert default.pretrained_cfg['tag'] == 'fmnist'
    assert '    fmnist (default): 92.89% top-1 on the Fashion-MNIST test set' in hubconf.hb_net_20_cifar.__doc__
    assert 'a1_in1k (default): converted from timm' in hubconf.hb_net_18.__doc__


def test_a_rules_own_initialisation_is_selectable_by_name():
    optnets.register(
        'mine_net_20_cifar', 'x[k+1] = T(x[k]) + b*x[k]', depth=20, special={'b': 1.0}, inits={'half': {'b': 0.5}}
    )
    model = timm.create_model('mine_net_20_cifar', coeff_init='half')
    assert model.stages[0].coeff.b.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match=r"one of \('special', 'theory', 'half'\)"):
        timm.create_model('mine_net_20_cifar', coeff_init='nope')


@pytest.mark.parametrize('family', optnets.models.FAMILIES)
def test_every_family_takes_steps_as_a_keyword(family):
    name = next(n for n in NAMES if n.startswith(family) and 'cifar' in n)
    model = timm.create_model(name, steps=(2, 2, 2), in_chans=3)
    assert [s.steps for s in model.stages] == [2, 2, 2]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
