"""The installed package, not the checkout: a built wheel, installed in a fresh virtual environment, trains with a
config it ships, named by name, from a folder that has no checkout in it."""

import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

from optnets.recipes.data import DEBIAN_FASHION_MNIST

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the files git would commit (as a clean clone has them): built in the
    checkout, setuptools would reuse its build/ folder, where an earlier build's files hide a missing package."""
    out, source = tmp_path_factory.mktemp('dist'), tmp_path_factory.mktemp('source')
    listed = subprocess.run(
        ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split('\0')):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob('optnets-*.whl'))


def test_the_wheel_holds_the_recipes_and_their_configs_inside_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        'optnets/recipes/train.py',
        'optnets/recipes/configs/fashion_mnist.yaml',
        'optnets/recipes/configs/models/hb_net_56.yaml',
        'optnets/weights/manifest.json',
    } <= names
    assert not [n for n in names if n.startswith(('recipes/', 'tests/', 'benchmarks/'))]


def test_the_wheel_holds_every_package_of_the_tree(wheel):
    """Every folder with an ``__init__.py`` under optnets/ (and recipes/, as optnets/recipes/) is in the wheel: a
    package missed by the build fails here, not on a user's machine (an editable install would hide it)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    tree = [p.relative_to(REPO).as_posix() for p in REPO.glob('optnets/**/__init__.py')]
    tree += ['optnets/' + p.relative_to(REPO).as_posix() for p in REPO.glob('recipes/**/__init__.py')]
    assert 'optnets/recon/__init__.py' in tree
    assert [p for p in tree if p not in names] == []


def share_site_packages(python: Path):
    """Let the venv of ``python`` see this interpreter's packages after its own, wherever they are installed: a
    system Python, a virtualenv or conda (``--system-site-packages`` would share the base interpreter's instead,
    which inside a virtualenv is not where torch is). Plain paths: this environment's .pth hooks, an editable
    optnets among them, do not run there."""
    here = {*site.getsitepackages(), sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']}
    theirs = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(theirs) / 'shared-with-the-tests.pth').write_text('\n'.join(sorted(here)) + '\n')


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason='apt-get install dataset-fashion-mnist')
@pytest.mark.timeout(600)
def test_a_wheel_install_trains_with_a_shipped_config_by_name(wheel, tmp_path):
    venv = tmp_path / 'venv'  # fresh, sharing this interpreter's torch, timm and lightning (no network here)
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=120)
    python, optnets = venv / 'bin' / 'python', venv / 'bin' / 'optnets'
    share_site_packages(python)
    subprocess.run(
        [python, '-m', 'pip', 'install', '--no-deps', '-q', str(wheel)], check=True, capture_output=True, timeout=300
    )
    where = subprocess.run(
        [python, '-c', 'import optnets.recipes; print(optnets.recipes.__file__)'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where
    result = subprocess.run(
        [
            optnets,
            'train',
            'fit',
            '--config',
            'fashion_mnist',
            '--trainer.max_steps',
            '2',
            '--data.train_subset',
            '64',
            '--data.val_subset',
            '64',
            '--data.batch_size',
            '16',
            '--data.num_workers',
            '0',
            '--trainer.enable_progress_bar',
            'false',
            '--trainer.default_root_dir',
            str(tmp_path / 'run'),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.load(tmp_path / 'run' / 'checkpoints' / 'last.ckpt', weights_only=True)['global_step'] == 2


EXTRA_MODULES = [
    'lightning',
    'sklearn',
    'matplotlib',
    'pandas',
    'tensorboard',
    'torchdata',
    'torchmetrics',
    'jsonargparse',
]
WITHOUT_EXTRAS = f'import sys\nfor name in {EXTRA_MODULES!r}:\n    sys.modules[name] = None  # not installed\n'


def test_the_core_builds_models_and_loads_weights_without_any_extra():
    code = (
        WITHOUT_EXTRAS
        + """
import timm, optnets
model = timm.create_model('hb_net_20_cifar.fmnist', pretrained=True)
print(optnets.compile_rule(optnets.rules.heavy_ball).streams[0].stream)
"""
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == 'x'


@pytest.mark.parametrize('statement, extra', [('import optnets.lpom', 'lpom'), ('import optnets.recipes', 'recipes')])
def test_a_part_whose_extra_is_missing_says_which_extra_to_install(statement, extra):
    code = WITHOUT_EXTRAS + statement
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
    assert f'pip install "optnets[{extra}]"' in result.stderr.strip().splitlines()[-1]


def test_optnets_train_without_the_recipes_extra_is_one_line():
    code = WITHOUT_EXTRAS + 'from optnets.cli import main\nmain(["train", "fit"])'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        'optnets train: this needs the optnets[recipes] extra (missing lightning, torchmetrics, torchdata, '
        'jsonargparse, tensorboard, sklearn): pip install "optnets[recipes]"'
    ]
