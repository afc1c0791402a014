"""Recipes: DataModules, fit/resume/predict/export through the CLI, and the clear errors.

CIFAR and ImageNet cannot be downloaded here: their DataModules run on tiny synthetic stand-ins (random images
in torchvision's own CIFAR file format, or an ImageFolder tree written by the test), labelled as such.
"""

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors import safe_open
from torchvision import datasets

from optnets.cli import main as optnets_command
from optnets.weights import export_checkpoint
from optnets.recipes.data import (
    DEBIAN_FASHION_MNIST,
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    ImageNetDataModule,
    SyntheticDataModule,
)
from optnets.recipes.module import ImageClassifier
from optnets.recipes.train import cli_main

QUICK = [
    '--data',
    'optnets.recipes.data.SyntheticDataModule',
    '--data.length',
    '16',
    '--data.batch_size',
    '8',
    '--model.model',
    'hb_net_20_cifar',
    '--trainer.accelerator',
    'cpu',
    '--trainer.enable_progress_bar',
    'false',
    '--trainer.log_every_n_steps',
    '1',
    '--trainer.enable_model_summary',
    'false',
]


def first_batch(data):
    data.prepare_data()
    data.setup('fit')
    return next(iter(data.train_dataloader())), next(iter(data.val_dataloader()))


def write_synthetic_cifar(root: Path, cls, per_file: int, monkeypatch) -> list[int]:
    """A synthetic stand-in in torchvision's own CIFAR format (pickled batches of random images), its checksums
    entered in the class's file lists: the real reader reads it. Returns the labels written, train then test."""
    import hashlib
    import pickle

    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    key = 'labels' if cls is datasets.CIFAR10 else 'fine_labels'
    classes = 10 if cls is datasets.CIFAR10 else 100
    rng = np.random.default_rng(0)
    labels, lists = [], {}
    for which in ('train_list', 'test_list'):
        lists[which] = []
        for name, _ in getattr(cls, which):
            batch = rng.integers(0, classes, per_file).tolist()
            labels += batch
            (folder / name).write_bytes(
                pickle.dumps({'data': rng.integers(0, 255, (per_file, 3072), dtype=np.uint8), key: batch})
            )
            lists[which].append([name, hashlib.md5((folder / name).read_bytes()).hexdigest()])
        monkeypatch.setattr(cls, which, lists[which])
    meta = folder / cls.meta['filename']
    meta.write_bytes(pickle.dumps({cls.meta['key']: [f'class {i}' for i in range(classes)]}))
    monkeypatch.setattr(cls, 'meta', dict(cls.meta, md5=hashlib.md5(meta.read_bytes()).hexdigest()))
    return labels


@pytest.mark.parametrize(
    'module, cls', [(CIFAR10DataModule, datasets.CIFAR10), (CIFAR100DataModule, datasets.CIFAR100)]
)
def test_cifar_datamodule_reads_torchvisions_format_on_a_synthetic_stand_in(module, cls, monkeypatch, tmp_path):
    labels = write_synthetic_cifar(tmp_path, cls, 4, monkeypatch)
    data = module(root=str(tmp_path), batch_size=4, num_workers=0)
    (x, y), (vx, vy) = first_batch(data)
    assert x.shape == (4, 3, 32, 32) and vx.shape == (4, 3, 32, 32)
    train = len(cls.train_list) * 4
    assert data.train_set.targets == labels[:train] and data.val_set.targets == labels[train:]
    assert module.num_classes == (10 if cls is datasets.CIFAR10 else 100)
    other = CIFAR100DataModule if module is CIFAR10DataModule else CIFAR10DataModule
    with pytest.raises(FileNotFoundError, match='not found under'):  # the other CIFAR's module finds nothing here
        other(root=str(tmp_path), num_workers=0).setup('fit')


def test_cifar_without_data_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match='--data.download true'):
        CIFAR10DataModule(root=str(tmp_path), num_workers=0).setup('fit')


def test_imagenet_datamodule_on_a_synthetic_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for label in ('a', 'b'):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(4):  # synthetic stand-in images
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f'{i}.png')
    data = ImageNetDataModule(str(tmp_path), model='hb_net_18', num_classes=2, batch_size=4, num_workers=0)
    (x, y), (vx, _) = first_batch(data)
    assert x.shape == (4, 3, 224, 224) and vx.shape == (4, 3, 224, 224)
    assert set(y.tolist()) <= {0, 1}
    # without a model of its own, the transforms follow the model the LightningModule trains (here a 32px one; a
    # searched rule's model, which timm's registry does not hold, too)
    data = ImageNetDataModule(str(tmp_path), num_classes=2, batch_size=4, num_workers=0)
    data.trainer = SimpleNamespace(lightning_module=ImageClassifier('hb_net_20_cifar', num_classes=2))
    (x, _), (vx, _) = first_batch(data)
    assert x.shape == (4, 3, 32, 32) and vx.shape == (4, 3, 32, 32)


def test_tagged_timm_names_and_predict(tmp_path):
    assert ImageClassifier('resnet18.a1_in1k', num_classes=3).model.num_classes == 3
    root = tmp_path / 'run'
    cli_main(['fit', *QUICK, '--trainer.max_steps', '1', '--trainer.default_root_dir', str(root)])
    cli = cli_main(['predict', *QUICK, '--trainer.default_root_dir', str(root), '--ckpt_path', 'last'])
    probs = torch.cat(cli.trainer.predict_loop.predictions)
    assert probs.shape == (16, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(16))


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason='apt-get install dataset-fashion-mnist')
def test_fashion_mnist_from_the_debian_files():
    data = FashionMNISTDataModule(batch_size=16, num_workers=0, train_subset=64, val_subset=32)
    (x, y), (vx, vy) = first_batch(data)
    assert x.shape == (16, 1, 32, 32) and vx.shape == (16, 1, 32, 32)
    assert len(data.train_set) == 64 and len(data.val_set.dataset) == 10_000
    assert abs(float(vx.mean())) < 0.5  # normalised
    assert int(y.max()) < 10


def test_fashion_mnist_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
        FashionMNISTDataModule(root=str(tmp_path)).prepare_data()


def test_synthetic_datamodule_is_deterministic():
    _, (x1, _) = first_batch(SyntheticDataModule(length=8, batch_size=4))
    _, (x2, _) = first_batch(SyntheticDataModule(length=8, batch_size=4))
    assert torch.equal(x1, x2)


def logged_steps(root: Path, version: int) -> list[int]:
    with open(root / 'csv' / f'version_{version}' / 'metrics.csv') as f:
        return [int(row['step']) for row in csv.DictReader(f) if row.get('train/loss_step')]


def test_fit_checkpoint_resume_and_export(tmp_path):
    root = tmp_path / 'run'
    cli_main(['fit', *QUICK, '--trainer.max_steps', '2', '--trainer.default_root_dir', str(root)])
    last = root / 'checkpoints' / 'last.ckpt'
    assert last.is_file() and torch.load(last, weights_only=True)['global_step'] == 2

    cli = cli_main(
        ['fit', *QUICK, '--trainer.max_steps', '4', '--trainer.default_root_dir', str(root), '--ckpt_path', 'last']
    )
    assert cli.trainer.global_step == 4
    first, second = logged_steps(root, 0), logged_steps(root, 1)
    assert len(first) == len(second) == 2 and min(second) > max(first)  # it continued: two more steps, not four

    out = tmp_path / 'weights.safetensors'
    assert optnets_command(['export', str(last), str(out)]) == 0
    trained = ImageClassifier.load_from_checkpoint(last, weights_only=True).model.eval()
    reloaded = timm.create_model(
        'hb_net_20_cifar', pretrained=True, in_chans=3, pretrained_cfg_overlay=dict(file=str(out))
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), trained(x))


@pytest.mark.parametrize('lr', [0.0, 0.05])
def test_last_ckpt_is_the_latest_state_whether_or_not_validation_improves(tmp_path, lr):
    """With lr 0 val/top1 never improves after the first epoch: last.ckpt must still be the final state."""
    root = tmp_path / 'run'
    cli = cli_main(
        ['fit', *QUICK, '--trainer.max_epochs', '3', '--model.lr', str(lr), '--trainer.default_root_dir', str(root)]
    )
    last = torch.load(root / 'checkpoints' / 'last.ckpt', weights_only=True)
    assert last['global_step'] == cli.trainer.global_step == 6 and last['epoch'] == 2
    assert len(list((root / 'checkpoints').glob('best-epoch=*.ckpt'))) == 1
    if lr == 0.0:
        assert (root / 'checkpoints' / 'best-epoch=0.ckpt').is_file()


def test_export_takes_the_ema_weights(tmp_path):
    root = tmp_path / 'ema'
    cli_main(
        [
            'fit',
            *QUICK,
            '--trainer.max_steps',
            '3',
            '--trainer.default_root_dir',
            str(root),
            '--trainer.callbacks+=EMAWeightAveraging',
            '--trainer.callbacks.decay',
            '0.5',
        ]
    )
    ckpt = torch.load(root / 'checkpoints' / 'last.ckpt', weights_only=True)
    out = tmp_path / 'ema.safetensors'
    assert export_checkpoint(root / 'checkpoints' / 'last.ckpt', out)['ema'] == 'True'
    with safe_open(out, 'pt') as f:
        weight = f.get_tensor('fc.weight')
    assert torch.equal(weight, ckpt['state_dict']['model.fc.weight'])
    assert not torch.equal(weight, ckpt['current_model_state']['model.fc.weight'])


@pytest.mark.parametrize(
    'args, message',
    [
        (['--model.model', 'not_a_model'], "unknown model 'not_a_model'"),
        (['--model.not_a_key', '1'], 'Parser key "model": Option \'not_a_key\' is not accepted'),
        (['--trainer.not_a_key', '1'], 'unrecognized arguments: --trainer.not_a_key'),
        (
            ['--data', 'optnets.recipes.data.FashionMNISTDataModule', '--data.root', '/nonexistent'],
            'apt-get install dataset-fashion-mnist',
        ),
    ],
)
def test_bad_input_is_one_line_before_training(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(['fit', *QUICK, '--trainer.default_root_dir', str(tmp_path), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('optnets train: error:') and message in err[-1]
    assert not (tmp_path / 'checkpoints').exists()


def test_lpom_through_the_recipe_cli(tmp_path):
    root = tmp_path / 'lpom'
    args = [
        'fit',
        '--model',
        'optnets.recipes.lpom_module.LPOMClassifier',
        '--model.image_size',
        '12',
        '--model.hidden',
        '[16]',
        '--data',
        'optnets.recipes.data.SyntheticDataModule',
        '--data.in_chans',
        '1',
        '--data.image_size',
        '12',
        '--data.length',
        '32',
        '--data.batch_size',
        '8',
        '--trainer.accelerator',
        'cpu',
        '--trainer.enable_progress_bar',
        'false',
        '--trainer.default_root_dir',
        str(root),
    ]
    cli = cli_main([*args, '--trainer.max_steps', '2'])
    before = [w.clone() for w in cli.model.weights]
    cli = cli_main([*args, '--trainer.max_steps', '4', '--ckpt_path', 'last'])
    assert cli.trainer.global_step == 4
    assert not all(torch.equal(a, b) for a, b in zip(before, cli.model.weights))  # it kept training
    assert all(not w.requires_grad for w in cli.model.weights)  # and never needed a gradient


def test_lpom_cnn_config_trains_through_the_recipe_cli(tmp_path):
    cli = cli_main(
        [
            'fit',
            '--config',
            'lpom_cnn_fashion_mnist',
            '--data',
            'optnets.recipes.data.SyntheticDataModule',
            '--data.in_chans',
            '1',
            '--data.image_size',
            '28',
            '--data.length',
            '16',
            '--data.batch_size',
            '8',
            '--trainer.max_steps',
            '2',
            '--trainer.enable_progress_bar',
            'false',
            '--trainer.default_root_dir',
            str(tmp_path),
        ]
    )
    assert type(cli.model.lpom).__name__ == 'LPOMConv' and cli.trainer.global_step == 2
    assert cli.model.lpom.rho_max == 0.9  # the config's cap reaches the estimator
    assert [tuple(w.shape) for w in cli.model.weights] == [(16, 26), (32, 401), (10, 32 * 7 * 7 + 1)]


def test_the_readme_main_job_runs_on_a_tiny_subset(tmp_path, capsys):
    """optnets.recipes.compare, the README's first command, on 64 real Fashion-MNIST images: both variants, one
    initialisation."""
    from optnets.recipes.compare import main

    runs = main(
        [
            '--models',
            'hb_net_20_cifar',
            '--epochs',
            '1',
            '--train-subset',
            '64',
            '--test-subset',
            '64',
            '--batch-size',
            '32',
            '--workers',
            '0',
            '--out',
            str(tmp_path),
        ]
    )
    assert [r['variant'] for r in runs] == ['learned', 'ResNet (fixed)']
    assert all(len(r['top1']) == 1 and 0 <= r['top1'][0] <= 1 for r in runs)
    saved = json.loads((tmp_path / 'runs.json').read_text())
    assert len(saved['runs']) == 2 and (tmp_path / 'curves.png').stat().st_size > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('elapsed: ')


def test_a_run_becomes_a_hub_folder_that_timm_loads_and_publish_uploads_it(tmp_path, monkeypatch):
    root = tmp_path / 'run'
    cli_main(
        [
            'fit',
            *QUICK,
            '--trainer.max_steps',
            '2',
            '--trainer.default_root_dir',
            str(root),
            '--model.model_kwargs',
            '{learn_coeffs: false}',
        ]
    )
    card = tmp_path / 'card.md'
    card.write_text('---\nlicense: apache-2.0\n---\n# a card\n')
    folder = tmp_path / 'hub'
    assert (
        optnets_command(
            ['export', str(root / 'checkpoints' / 'last.ckpt'), '--hub-dir', str(folder), '--card', str(card)]
        )
        == 0
    )
    assert {'model.safetensors', 'config.json', 'README.md', 'config.yaml', 'metrics.csv'} <= {
        p.name for p in folder.iterdir()
    }
    assert json.loads((folder / 'config.json').read_text())['model_args']['learn_coeffs'] is False
    trained = ImageClassifier.load_from_checkpoint(root / 'checkpoints' / 'last.ckpt', weights_only=True).model
    loaded = timm.create_model(f'local-dir:{folder}', pretrained=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), trained.eval()(x))

    calls = []

    class Hub:  # a stand-in for huggingface_hub.HfApi: no network here
        def create_repo(self, repo_id, **kwargs):
            calls.append(('create', repo_id))

        def upload_folder(self, folder_path, repo_id, **kwargs):
            calls.append(('upload', repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return 'https://example.invalid/commit'

    import optnets.weights.hub

    monkeypatch.setattr(optnets.weights.hub, 'HfApi', Hub)
    optnets_command(['publish', str(folder), '--repo', 'me/hb_net_20'])
    assert calls[0] == ('create', 'me/hb_net_20') and 'model.safetensors' in calls[1][2]
    with pytest.raises(SystemExit):
        optnets_command(['publish', str(tmp_path), '--repo', 'me/x'])  # not a hub folder: one line, exit 2


def training_only(root: Path, **kwargs) -> L.Trainer:
    """A CPU trainer that trains and does nothing else: no validation, logs, checkpoints or progress bar."""
    return L.Trainer(
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=root,
        **kwargs,
    )


class LearningRates(L.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, *args):
        self.seen.append(trainer.optimizers[0].param_groups[0]['lr'])


@pytest.mark.parametrize(
    'schedule, expected',
    [
        # 8 steps, 2 of warmup from 1% of lr; 'step' divides by 10 at 50% and 75% of all steps (steps 4 and 6)
        ('step', [0.001, 0.0505, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
        # cosine over the 6 steps after the warmup
        ('cosine', [0.001, 0.0505] + [0.05 * (1 + math.cos(math.pi * k / 6)) for k in range(6)]),
    ],
)
def test_learning_rate_schedules_with_warmup(schedule, expected, tmp_path):
    rates = LearningRates()
    module = ImageClassifier('hb_net_20_cifar', lr=0.1, schedule=schedule, warmup_epochs=1)
    trainer = training_only(tmp_path, max_epochs=4, callbacks=[rates])
    trainer.fit(module, SyntheticDataModule(length=16, batch_size=8))  # 2 steps an epoch
    assert rates.seen == pytest.approx(expected, rel=1e-6)


def test_coeff_lr_scale_moves_only_the_coefficients_at_their_own_rate(tmp_path):
    def first_step(scale: float) -> dict:
        L.seed_everything(0)
        module = ImageClassifier('hb_net_20_cifar', lr=0.1, weight_decay=5e-4, coeff_lr_scale=scale)
        before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
        trainer = training_only(tmp_path, max_steps=1)
        trainer.fit(module, SyntheticDataModule(length=8, batch_size=8))
        groups = trainer.optimizers[0].param_groups
        assert sorted(id(p) for g in groups for p in g['params']) == sorted(id(p) for p in module.parameters())
        return {n: p.detach() - before[n] for n, p in module.model.named_parameters()}

    coefficients = set(timm.create_model('hb_net_20_cifar').no_weight_decay())
    full, tenth = first_step(1.0), first_step(0.1)
    assert coefficients and max(full[n].abs().max() for n in coefficients) > 1e-2
    for name in full:  # atol: a float32 step near 1 rounds to its spacing there
        expected = full[name] * 0.1 if name in coefficients else full[name]
        torch.testing.assert_close(tenth[name], expected, rtol=1e-5, atol=2e-7)


def test_a_checkpoint_restores_the_coefficients_own_group_into_a_fresh_module(tmp_path):
    """Save after a step, a fresh module, load through Lightning's resume: the same weights, and the optimizer's
    three groups (the coefficients' at their own rate) with the same momenta."""
    L.seed_everything(0)
    module = ImageClassifier('hb_net_20_cifar', lr=0.1, weight_decay=5e-4, coeff_lr_scale=0.1)
    trainer = training_only(tmp_path, max_steps=1)
    trainer.fit(module, SyntheticDataModule(length=8, batch_size=8))
    trainer.save_checkpoint(tmp_path / 'step1.ckpt')
    saved = trainer.optimizers[0].state_dict()

    L.seed_everything(1)  # other initial weights: only the checkpoint can make them equal
    fresh = ImageClassifier('hb_net_20_cifar', lr=0.1, weight_decay=5e-4, coeff_lr_scale=0.1)
    again = training_only(tmp_path, max_steps=1)
    again.fit(fresh, SyntheticDataModule(length=8, batch_size=8), ckpt_path=tmp_path / 'step1.ckpt')
    for (name, a), b in zip(module.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    loaded = again.optimizers[0].state_dict()
    assert [g['lr'] for g in loaded['param_groups']] == [g['lr'] for g in saved['param_groups']]
    groups = saved['param_groups']  # the schedule scales every group alike
    assert len(groups) == 3 and groups[2]['lr'] == pytest.approx(0.1 * groups[0]['lr'])
    for key, state in saved['state'].items():
        assert torch.equal(state['momentum_buffer'], loaded['state'][key]['momentum_buffer'])


def test_mixup_trains_on_mixed_images_and_soft_targets():
    module = ImageClassifier('hb_net_20_cifar', mixup=0.4, label_smoothing=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(0)
    np.random.seed(0)
    loss = module.training_step((x.clone(), y), 0)  # timm's Mixup mixes the batch in place
    np.random.seed(0)
    mixed, soft = module.mixup(x.clone(), y)  # timm's Mixup draws its lambda from NumPy
    assert soft.shape == (4, 10) and not torch.equal(mixed, x)
    expected = torch.sum(-soft * torch.log_softmax(module(mixed), -1), -1).mean()
    torch.testing.assert_close(loss, expected)


def test_a_hub_folder_carries_the_runs_preprocessing_and_a_card_written_from_the_run(tmp_path, capsys):
    """timm's save_for_hf would record the architecture's default cfg (CIFAR's mean and std); the folder records
    what this run did, and its README is the run's: its data, its metrics, how to load it."""
    root = tmp_path / 'run'
    cli_main(
        [
            'fit',
            '--data',
            'optnets.recipes.data.FashionMNISTDataModule',
            '--data.train_subset',
            '32',
            '--data.val_subset',
            '32',
            '--data.batch_size',
            '16',
            '--data.num_workers',
            '0',
            '--model.model',
            'hb_net_20_cifar',
            '--model.model_kwargs',
            '{coeff_shape: channel}',
            '--trainer.accelerator',
            'cpu',
            '--trainer.max_steps',
            '2',
            '--trainer.enable_progress_bar',
            'false',
            '--trainer.default_root_dir',
            str(root),
        ]
    )
    folder = tmp_path / 'hub'
    optnets_command(['export', str(root / 'checkpoints' / 'last.ckpt'), '--hub-dir', str(folder)])
    cfg = json.loads((folder / 'config.json').read_text())['pretrained_cfg']
    assert cfg['mean'] == [0.286] and cfg['std'] == [0.353] and cfg['input_size'] == [1, 32, 32]
    card = (folder / 'README.md').read_text()
    assert 'library_name: timm' in card and '- fashion_mnist' in card and '| val/top1 |' in card
    assert '\n- hb_net\n' in card  # the family's tag, from the family registry (not 'hb', split from the name)
    assert 'AutoModelForImageClassification.from_pretrained' in card
    optnets_command(['export', str(root / 'checkpoints' / 'last.ckpt'), str(tmp_path / 'w.safetensors')])
    hint = capsys.readouterr().out.strip().splitlines()[-1].removeprefix('load it: ')
    model = eval(hint, {'timm': timm})  # the printed load hint works as printed, model_kwargs included
    assert model.stages[0].coeff.b1.dim() == 4  # coeff_shape='channel'


def test_transformers_loads_an_exported_folder_with_timms_logits_and_eval_transform(tmp_path):
    """transformers' timm wrapper, as its users call it, on a folder `optnets export --hub-dir` wrote: the logits
    are the ones timm's own load gives, and AutoImageProcessor is timm's eval transform for that model."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    root = tmp_path / 'run'
    cli_main(
        ['fit', *QUICK, '--data.in_chans', '1', '--trainer.max_steps', '1', '--trainer.default_root_dir', str(root)]
    )
    folder = tmp_path / 'hub'
    assert optnets_command(['export', str(root / 'checkpoints' / 'last.ckpt'), '--hub-dir', str(folder)]) == 0
    ours = timm.create_model(f'local-dir:{folder}', pretrained=True).eval()
    theirs = AutoModelForImageClassification.from_pretrained(folder).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(theirs(x).logits, ours(x))
    image = Image.fromarray(torch.randint(0, 256, (28, 28), dtype=torch.uint8).numpy(), mode='L')
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=ours))
    pixels = AutoImageProcessor.from_pretrained(folder)(image, return_tensors='pt').pixel_values
    assert torch.equal(pixels, transform(image).unsqueeze(0))
