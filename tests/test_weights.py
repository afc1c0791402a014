"""Published weights through timm's pretrained=True: verified by hash, corrupt files refused and removed.

The hub is never reached: its download function is replaced by one that serves files made here."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import optnets  # noqa: F401
from optnets.weights import registry

from tests.helpers import randomise_norms

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A stand-in hub: ``hub.serve(repo, file)`` makes the download of ``repo``'s file return a cached copy."""
    served, cache = {}, tmp_path / 'hub-cache'
    cache.mkdir()
    monkeypatch.setenv('OPTNETS_CACHE', str(tmp_path / 'optnets-cache'))
    monkeypatch.delenv(registry.WEIGHTS_DIR, raising=False)

    class Hub:
        calls = 0

        @staticmethod
        def serve(repo, file):
            served[repo] = file

        @staticmethod
        def download(repo_id, filename, revision):
            Hub.calls += 1
            target = cache / repo_id.replace('/', '--') / filename
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(served[repo_id], target)
            return str(target)

    monkeypatch.setattr(registry, '_download', Hub.download)
    monkeypatch.setattr(registry, 'try_to_load_from_cache', lambda *args, **kwargs: None)
    return Hub


def source_file(name, path):
    model = randomise_norms(timm.create_model(name))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model


def test_converted_tags_are_listed_with_their_sources_metadata():
    assert {'hb_net_34.a1_in1k', 'hb_net_18.tv_in1k', 'agd_net_121.tv_in1k'} <= set(timm.list_pretrained('*_net*'))
    cfg = timm.models.get_pretrained_cfg('hb_net_34.a1_in1k')
    source = timm.models.get_pretrained_cfg('resnet34.a1_in1k')
    assert (cfg.interpolation, cfg.crop_pct, cfg.test_input_size, cfg.license, cfg.mean) == (
        source.interpolation,
        source.crop_pct,
        source.test_input_size,
        source.license,
        source.mean,
    )
    assert cfg.hf_hub_id == 'timm/resnet34.a1_in1k' and 'logits equal' in cfg.notes[0]


def test_a_converted_tag_loads_with_the_source_logits_and_pins_its_hash(hub, tmp_path):
    reference = source_file('resnet18', tmp_path / 'resnet18.safetensors')
    hub.serve('timm/resnet18.tv_in1k', tmp_path / 'resnet18.safetensors')
    model = timm.create_model('hb_net_18.tv_in1k', pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
    assert registry._pins()['hb_net_18.tv_in1k']['sha256'] == registry.sha256(tmp_path / 'resnet18.safetensors')
    assert registry.status('hb_net_18.tv_in1k') in ('ok', 'not downloaded')  # the stand-in cache is not the hub's


@pytest.mark.parametrize('damage', ['corrupt', 'truncated'])
def test_a_file_that_does_not_match_is_refused_and_removed(hub, tmp_path, damage):
    source_file('resnet18', tmp_path / 'good.safetensors')
    hub.serve('timm/resnet18.tv_in1k', tmp_path / 'good.safetensors')
    timm.create_model('hb_net_18.tv_in1k', pretrained=True)  # pins the good file's hash
    cached = tmp_path / 'hub-cache' / 'timm--resnet18.tv_in1k' / 'model.safetensors'
    data = bytearray(cached.read_bytes())
    if damage == 'corrupt':
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    cached.write_bytes(bytes(data))
    found = r'sha256 [0-9a-f]{64}' if damage == 'corrupt' else f'{len(data)} bytes'  # the size is checked first
    with pytest.raises(
        registry.WeightsError,
        match=rf'hb_net_18\.tv_in1k: .* has {found}, its pin in .*pins\.json expects '
        r'[0-9a-f0-9]+ \(removed from the cache\)',  # a pinned hash, not the manifest's
    ):
        timm.create_model('hb_net_18.tv_in1k', pretrained=True)
    assert not cached.exists()
    timm.create_model('hb_net_18.tv_in1k', pretrained=True)  # the next load downloads a good copy again


def test_a_wrong_architecture_is_an_error_and_is_never_pinned(hub, tmp_path):
    source_file('resnet34', tmp_path / 'resnet34.safetensors')
    hub.serve('timm/resnet18.tv_in1k', tmp_path / 'resnet34.safetensors')
    with pytest.raises(RuntimeError, match='state_dict'):
        timm.create_model('hb_net_18.tv_in1k', pretrained=True)
    assert 'hb_net_18.tv_in1k' not in registry._pins()  # a valid safetensors file that did not load


def test_a_weights_folder_and_an_explicit_file_work_offline(hub, tmp_path, monkeypatch):
    reference = source_file('resnet18', tmp_path / 'hb_net_18.tv_in1k.safetensors')
    monkeypatch.setenv(registry.WEIGHTS_DIR, str(tmp_path))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    x = torch.randn(1, 3, 64, 64)
    for model in (
        timm.create_model('hb_net_18.tv_in1k', pretrained=True),
        timm.create_model(
            'hb_net_18',
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(tmp_path / 'hb_net_18.tv_in1k.safetensors')),
        ),
    ):
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x), reference(x), rtol=1e-5, atol=1e-5)
    assert hub.calls == 0


def test_an_unknown_tag_is_a_clear_error():
    with pytest.raises(registry.WeightsError, match='optnets weights list'):
        registry.verified_file('hb_net_18.nope')


RUNS = Path(__file__).resolve().parents[1] / 'benchmarks' / 'results' / 'fmnist_weights' / 'runs.json'
SHIPPED = [tag for tag, entry in registry.MANIFEST.items() if 'package' in entry['source']]


def test_the_weights_trained_here_are_shipped():
    assert {'hb_net_20_cifar.fmnist', 'hb_net_20_cifar.fmnist_resnet'} <= set(SHIPPED)


@pytest.mark.parametrize('tag', SHIPPED)
def test_shipped_weights_load_for_real_and_score_as_measured(tag):
    from optnets.recipes.data import FashionMNISTDataModule

    model = timm.create_model(tag, pretrained=True).eval()
    assert registry.status(tag) == 'ok' and model.pretrained_cfg['input_size'] == (1, 32, 32)
    data = FashionMNISTDataModule(batch_size=500, num_workers=0, val_subset=1000)
    data.prepare_data()
    data.setup()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in data.val_dataloader())
    assert correct / 1000 == pytest.approx(json.loads(RUNS.read_text())[tag]['test_top1_first_1000'], abs=0.002)


def test_the_bare_name_is_its_first_tag_with_weights_as_in_timm():
    """timm's convention: an architecture's default is its first tag with weights, so the bare name loads them
    (timm.create_model and torch.hub alike); CIFAR's three channels are one argument away, and the untrained
    CIFAR cfg is still listed."""
    bare, tagged = (timm.create_model(n, pretrained=True).eval() for n in ('hb_net_20_cifar', 'hb_net_20_cifar.fmnist'))
    assert bare.pretrained_cfg['tag'] == 'fmnist' and bare.in_chans == 1
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(bare(x), tagged(x))
    cifar = timm.create_model('hb_net_20_cifar', in_chans=3)
    assert cifar.in_chans == 3 and cifar.pretrained_cfg['input_size'] == (3, 32, 32)
    assert 'hb_net_20_cifar' in timm.list_pretrained('hb_net_20_cifar*')


def test_a_file_that_does_not_load_is_never_pinned_so_the_right_file_still_loads(hub, tmp_path, monkeypatch):
    garbage = tmp_path / 'folder' / 'hb_net_18.tv_in1k.safetensors'
    garbage.parent.mkdir()
    garbage.write_bytes(b'not safetensors at all')
    monkeypatch.setenv(registry.WEIGHTS_DIR, str(garbage.parent))
    with pytest.raises(registry.WeightsError, match='does not load as safetensors'):
        timm.create_model('hb_net_18.tv_in1k', pretrained=True)
    assert 'hb_net_18.tv_in1k' not in registry._pins()
    source_file('resnet18', garbage)  # the right file, at the same place
    timm.create_model('hb_net_18.tv_in1k', pretrained=True)
    assert 'hb_net_18.tv_in1k' not in registry._pins()  # a file of the user's folder is never pinned


def test_a_weights_folder_file_is_never_pinned_so_the_genuine_download_still_loads(hub, tmp_path, monkeypatch):
    """Any file of the right shape in OPTNETS_WEIGHTS_DIR loads, but is not taken as the tag's hash: the genuine
    download, later, loads and is pinned."""
    folder = tmp_path / 'folder'
    folder.mkdir()
    source_file('resnet18', folder / 'hb_net_18.tv_in1k.safetensors')  # right shape, other values
    monkeypatch.setenv(registry.WEIGHTS_DIR, str(folder))
    timm.create_model('hb_net_18.tv_in1k', pretrained=True)
    assert 'hb_net_18.tv_in1k' not in registry._pins()
    monkeypatch.delenv(registry.WEIGHTS_DIR)
    source_file('resnet18', tmp_path / 'genuine.safetensors')
    hub.serve('timm/resnet18.tv_in1k', tmp_path / 'genuine.safetensors')
    timm.create_model('hb_net_18.tv_in1k', pretrained=True)
    assert registry._pins()['hb_net_18.tv_in1k']['sha256'] == registry.sha256(tmp_path / 'genuine.safetensors')


GOOD_PIN = {'sha256': 'ab' * 32, 'size': 10}


@pytest.mark.parametrize(
    'content',
    [
        '{not json',
        '[1, 2]',
        '{"hb_net_18.tv_in1k": 3}',
        *(
            json.dumps({'hb_net_18.tv_in1k': {**GOOD_PIN, **bad}})
            for bad in ({'sha256': 5}, {'sha256': 'xyz'}, {'size': '10'}, {'size': -1}, {'size': 0}, {'size': 1.5})
        ),
    ],
)
def test_a_malformed_pins_file_is_one_error_that_names_it_and_deletes_nothing(hub, tmp_path, content):
    source_file('resnet18', tmp_path / 'resnet18.safetensors')
    hub.serve('timm/resnet18.tv_in1k', tmp_path / 'resnet18.safetensors')
    registry.verified_file('hb_net_18.tv_in1k')  # downloaded into the cache
    cached = list((tmp_path / 'hub-cache').rglob('*.safetensors'))
    registry.pins_file().parent.mkdir(parents=True, exist_ok=True)
    registry.pins_file().write_text(content)
    with pytest.raises(registry.WeightsError, match=str(registry.pins_file()).replace('.', r'\.')):
        registry.verified_file('hb_net_18.tv_in1k')
    assert cached and all(p.is_file() for p in cached)


def test_verify_checks_the_file_a_load_would_use(hub, tmp_path, monkeypatch, capsys):
    from optnets.cli import main

    tag = 'hb_net_20_cifar.fmnist'  # shipped, with its hash in the manifest
    override = tmp_path / f'{tag}.safetensors'
    data = bytearray(registry.package_file(registry.MANIFEST[tag]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    override.write_bytes(bytes(data))
    monkeypatch.setenv(registry.WEIGHTS_DIR, str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(['weights', 'verify', tag])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and 'MISMATCH' in out and err.strip() == f'optnets: 1 of 1 files do not match: {tag}'
    with pytest.raises(registry.WeightsError, match='sha256'):
        timm.create_model(tag, pretrained=True)


def test_an_unreachable_hub_is_one_error_at_once(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv('OPTNETS_CACHE', str(tmp_path))
    monkeypatch.setattr(registry, 'try_to_load_from_cache', lambda *args, **kwargs: None)
    monkeypatch.setattr(registry.constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(registry, 'hf_hub_url', lambda repo, name, revision=None: 'http://127.0.0.1:9/nothing')
    start = time.monotonic()
    with pytest.raises(registry.WeightsError, match='cannot fetch it from the Hugging Face hub'):
        registry.verified_file('hb_net_18.tv_in1k')
    assert time.monotonic() - start < 5


@pytest.mark.parametrize('tag', SHIPPED)
def test_timms_own_data_pipeline_reproduces_the_published_accuracy_on_the_full_test_set(tag):
    """resolve_data_config + create_transform, as timm's validate.py uses them: the cfg's crop_pct pads 28 to 32
    exactly as the recipe does, so the published test accuracy comes out."""
    from timm.data import create_transform, resolve_data_config
    from torchvision import datasets
    from optnets.recipes.data import FashionMNISTDataModule, fashion_mnist_root

    FashionMNISTDataModule().prepare_data()
    model = timm.create_model(tag, pretrained=True).eval()
    transform = create_transform(**resolve_data_config(model=model))
    test = datasets.FashionMNIST(fashion_mnist_root(), train=False, transform=transform)
    loader = torch.utils.data.DataLoader(test, batch_size=1000)
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    assert correct / len(test) == pytest.approx(json.loads(RUNS.read_text())[tag]['test_top1'], abs=1e-4)


@pytest.fixture(scope='module')
def test_image_folder(tmp_path_factory):
    """The Fashion-MNIST test set as a folder of PNGs per class, the layout timm's scripts read."""
    from torchvision import datasets
    from optnets.recipes.data import FashionMNISTDataModule, fashion_mnist_root

    FashionMNISTDataModule().prepare_data()
    root = tmp_path_factory.mktemp('fashion_mnist_test')
    for index, (image, label) in enumerate(datasets.FashionMNIST(fashion_mnist_root(), train=False)):
        (root / str(label)).mkdir(exist_ok=True)
        image.save(root / str(label) / f'{index:05d}.png')
    return root


def test_validate_pys_path_asks_for_three_channels_and_still_scores_the_published_accuracy(test_image_folder):
    """What timm's validate.py does with no flag: ``in_chans=3``, the data config of that model, images read
    as RGB, the prefetching loader. A one-channel tag repeats its stem over the channels and its mean and std."""
    tag = 'hb_net_20_cifar.fmnist'
    from timm.data import create_dataset, create_loader, resolve_data_config

    model = timm.create_model(tag, pretrained=True, in_chans=3).eval()
    config = resolve_data_config(model=model)
    assert config['input_size'] == (3, 32, 32) and len(config['mean']) == 3
    dataset = create_dataset('', root=str(test_image_folder), input_img_mode='RGB')
    loader = create_loader(dataset, batch_size=1000, num_workers=0, device=torch.device('cpu'), **config)
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    assert correct / len(dataset) == pytest.approx(json.loads(RUNS.read_text())[tag]['test_top1'], abs=1e-4)


needs_timm_scripts = pytest.mark.skipif(
    not os.environ.get('TIMM_SCRIPTS'),
    reason="timm's scripts ship in its repository only, not on PyPI: set TIMM_SCRIPTS to a checkout of it",
)


def timm_script(name: str, *args: str, cwd: Path) -> str:
    """``optnets timm SCRIPT ARGS``, the documented command, on one of timm's own scripts; its stdout."""
    script = Path(os.environ['TIMM_SCRIPTS']) / name
    out = subprocess.run(
        [sys.executable, '-m', 'optnets', 'timm', str(script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@needs_timm_scripts
def test_timms_validate_py_scores_the_published_accuracy_as_the_card_says(test_image_folder, tmp_path):
    tag = 'hb_net_20_cifar.fmnist'
    args = ['--model', tag, '--pretrained', '--in-chans', '1', '--device', 'cpu', '--workers', '0', '-b', '500']
    out = timm_script('validate.py', str(test_image_folder), *args, cwd=tmp_path)
    result = json.loads(out[out.index('--result') + len('--result') :])
    assert result['top1'] == pytest.approx(100 * json.loads(RUNS.read_text())[tag]['test_top1'], abs=0.01)


@needs_timm_scripts
def test_timms_train_py_and_benchmark_py_run_an_optnets_model(test_image_folder, tmp_path):
    data = tmp_path / 'data'
    for split, images in (('train', slice(0, 16)), ('validation', slice(16, 24))):
        for label in ('0', '1'):
            (data / split / label).mkdir(parents=True)
            for image in sorted((test_image_folder / label).iterdir())[images]:
                shutil.copy(image, data / split / label)
    args = ['--model', 'hb_net_20_cifar', '--in-chans', '1', '--num-classes', '2', '--epochs', '1', '-b', '8']
    timm_script('train.py', str(data), *args, '--device', 'cpu', '--workers', '0', '--output', 'out', cwd=tmp_path)
    assert list((tmp_path / 'out').rglob('model_best.pth.tar'))
    args = ['--model', 'agd_net_40_cifar', '--bench', 'inference', '-b', '2', '--num-bench-iter', '5']
    out = timm_script('benchmark.py', *args, '--num-warm-iter', '1', '--device', 'cpu', cwd=tmp_path)
    assert json.loads(out[out.index('--result') + len('--result') :])['model'] == 'agd_net_40_cifar'


def test_a_script_run_by_optnets_timm_sees_the_zoo_its_own_argv_and_main(tmp_path):
    """The launcher's contract on a small script (timm's own are tested above, where a checkout is given): run
    plainly, a script that asks timm for an optnets model fails as timm's do; through `optnets timm` it gets the
    model, its own argv, ``__name__ == '__main__'`` and its folder on ``sys.path``."""
    (tmp_path / 'helper.py').write_text('WHERE = "beside the script"\n')
    script = tmp_path / 'script.py'
    script.write_text(
        'import sys, timm, helper\n'
        'if __name__ == "__main__":\n'
        '    model = timm.create_model(sys.argv[1], pretrained=True)\n'
        '    print(sys.argv[1:], model.pretrained_cfg["tag"], helper.WHERE)\n'
    )
    plain = subprocess.run([sys.executable, str(script), 'hb_net_20_cifar'], capture_output=True, text=True)
    assert plain.returncode != 0 and 'Unknown model' in plain.stderr
    out = subprocess.run(
        [sys.executable, '-m', 'optnets', 'timm', str(script), 'hb_net_20_cifar', '--flag'],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.stdout.strip() == "['hb_net_20_cifar', '--flag'] fmnist beside the script", out.stderr[-2000:]
    missing = subprocess.run(
        [sys.executable, '-m', 'optnets', 'timm', 'nowhere/validate.py'], capture_output=True, text=True
    )
    assert missing.returncode == 2 and missing.stderr.count('\n') == 1 and 'pytorch-image-models' in missing.stderr


def test_drop_block_rate_is_timms_dropblock_in_the_last_two_stages():
    model = timm.create_model('hb_net_20_cifar', drop_block_rate=0.1, in_chans=3)
    blocks = [type(t.drop_block).__name__ for stage in model.stages for t in stage.transforms()]
    assert blocks == ['Identity'] * 2 + ['DropBlock2d'] * 4  # 2 steps per stage after each transition
    assert model.state_dict().keys() == timm.create_model('hb_net_20_cifar', in_chans=3).state_dict().keys()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
