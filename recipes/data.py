"""LightningDataModules: CIFAR-10/100, ImageNet (ImageFolder), Fashion-MNIST, and a synthetic smoke-test set.

Every loader is a ``StatefulDataLoader`` over ``(index, seed)`` keys from a ``SeededSampler``: the order of an epoch
and each sample's random augmentation are functions of the run's seed, the epoch and the position alone, so a run
resumed mid-epoch (Lightning stores the loader's position in the checkpoint) sees exactly the batches the
uninterrupted run saw, whatever the number of workers.
"""

import copy
import ctypes
import errno
import gzip
import hashlib
import os
import random
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, Subset, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision import datasets, transforms as T

from optnets.constants import CIFAR_MEAN, CIFAR_STD, FASHION_MNIST_MEAN, FASHION_MNIST_STD

DEBIAN_FASHION_MNIST = Path('/usr/share/datasets/fashion-mnist')
FASHION_MNIST_MD5 = {  # of the decompressed originals: the same whichever gzip packed them (Debian's repacks do)
    'train-images-idx3-ubyte': 'f4a8712d7a061bf5bd6d2ca38dc4d50a',
    'train-labels-idx1-ubyte': '9018921c3c673c538a1fc5bad174d6f9',
    't10k-images-idx3-ubyte': '8181f5470baa50b63fa0f6fddb340f0a',
    't10k-labels-idx1-ubyte': '15d484375f8d13e6eb1aabb0c3f46965',
}


def default_root() -> Path:
    return Path(os.environ.get('OPTNETS_DATA', Path.home() / '.cache' / 'optnets' / 'data'))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block on torch's (CPU), NumPy's and Python's generators seeded with ``seed``. In the main process the
    global states are kept (the training step draws from them too); a loader worker's generators are its own."""
    if get_worker_info() is not None:
        _seed_all(seed)
        yield
        return
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        _seed_all(seed)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def _seed_all(seed: int):
    # the CPU generator alone: torch.manual_seed would also reseed every CUDA generator, which fork_rng(devices=[])
    # does not restore, and costs 80 times as much a sample
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


class SeededSampler(Sampler):
    """Yields ``(index, seed)``: a permutation of the dataset (or its order, ``shuffle=False``) and one seed per
    sample, both drawn from ``(seed, epoch)`` alone. Lightning calls ``set_epoch`` before each epoch."""

    def __init__(self, length: int, seed: int, shuffle: bool):
        self.length, self.seed, self.shuffle, self.epoch = length, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> 'SeededOrder':
        return SeededOrder(self, self.epoch)


class SeededOrder(Iterator[tuple[int, int]]):
    """One epoch of a ``SeededSampler``; its state (epoch and position) is what the loader's checkpoint holds, so
    a resumed loader continues that epoch whenever Lightning gets round to ``set_epoch``."""

    def __init__(self, sampler: SeededSampler, epoch: int):
        self.sampler = sampler
        self.load_state_dict({'epoch': epoch, 'position': 0})

    def state_dict(self) -> dict:
        return {'epoch': self.epoch, 'position': self.position}

    def load_state_dict(self, state: dict) -> None:
        sampler, self.epoch, self.position = self.sampler, state['epoch'], state['position']
        generator = torch.Generator().manual_seed((sampler.seed * 1_000_003 + self.epoch) % 2**63)
        n = sampler.length
        self.order = (torch.randperm(n, generator=generator) if sampler.shuffle else torch.arange(n)).tolist()
        self.seeds = torch.randint(2**62, (n,), generator=generator).tolist()

    def __next__(self) -> tuple[int, int]:
        if self.position >= len(self.order):
            raise StopIteration
        self.position += 1
        return self.order[self.position - 1], self.seeds[self.position - 1]


class SeededSamples(Dataset):
    """``dataset[index]`` computed under the key's own seed, so its random transforms depend on nothing else."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with seeded(seed):
            return self.dataset[index]


def die_with_parent(worker_id: int) -> None:
    """A loader worker ends with its parent process (Linux), so a killed run leaves no orphaned workers."""
    if sys.platform.startswith('linux'):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def fashion_mnist_root() -> Path:
    """The decompressed Fashion-MNIST cache, in a folder named by the checksums of the files it may hold (only
    files that match them are ever written there), so no earlier or different copy is ever served from it."""
    key = hashlib.sha256(' '.join(FASHION_MNIST_MD5.values()).encode()).hexdigest()[:12]
    return default_root() / f'fashion-mnist-{key}'


def decompress_verified(packed: Path, target: Path, md5: str) -> None:
    """Decompress ``packed`` to ``target`` if its content has checksum ``md5``; else raise, writing nothing.
    Each process writes its own partial file, so that runs preparing the same cache at once do not collide."""
    partial, digest = target.with_name(f'{target.name}.{os.getpid()}.partial'), hashlib.md5()
    try:
        with gzip.open(packed) as data, open(partial, 'wb') as out:
            while chunk := data.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(f'md5 {digest.hexdigest()}, expected {md5}')
        partial.replace(target)  # atomic: an interrupted copy never passes for a complete one
    except OSError as error:
        if error.errno not in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EROFS):  # the writing failed
            raise _not_fashion_mnist(packed, error) from None
        raise ValueError(f'cannot write the cache {target} ({error.strerror}): nothing was cached') from None
    except (EOFError, ValueError) as error:
        raise _not_fashion_mnist(packed, error) from None
    finally:
        partial.unlink(missing_ok=True)


def _not_fashion_mnist(packed: Path, error: Exception) -> ValueError:
    return ValueError(
        f"{packed} is not Fashion-MNIST's {packed.name} ({error}): the file is corrupt or "
        'changed; reinstall dataset-fashion-mnist or point --data.root at the original files'
    )


class ImageDataModule(L.LightningDataModule):
    """Shared loaders. ``root`` is the folder holding the dataset's files as their publisher ships them (CIFAR's
    python batches, ImageNet's ``train``/``val`` folders, Fashion-MNIST's four ``.gz`` files); each DataModule has
    its own default. ``train_subset`` / ``val_subset`` take the first N images (quick runs). ``holdout`` makes the
    last N training images (read with the evaluation transform) the validation set, so that choices are made on
    them and the test set is read by ``test`` alone; by default the test set is the validation set too."""

    num_classes: int = 10
    in_chans: int = 3
    default_root = staticmethod(default_root)

    def __init__(
        self,
        root: Optional[str] = None,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 2,
        train_subset: Optional[int] = None,
        val_subset: Optional[int] = None,
        holdout: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()  # the concrete DataModule's arguments, for the logs
        self.root = Path(root).expanduser() if root else self.default_root()
        self.download, self.batch_size, self.num_workers = download, batch_size, num_workers
        self.train_subset, self.val_subset, self.holdout = train_subset, val_subset, holdout
        if batch_size < 1 or num_workers < 0 or holdout < 0:
            raise ValueError(
                f'batch_size must be at least 1 and num_workers and holdout at least 0, got '
                f'{batch_size}, {num_workers} and {holdout}'
            )
        if any(subset is not None and subset < 1 for subset in (train_subset, val_subset)):
            raise ValueError(f'train_subset and val_subset must be at least 1, got {train_subset} and {val_subset}')
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None
        self.test_set: Optional[Dataset] = None
        self.seed = torch.initial_seed()  # the run's seed (seed_everything); resumed from the checkpoint

    def state_dict(self) -> dict:
        return {'seed': self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state['seed']

    def datasets(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def data_config(self) -> dict:
        """What the evaluation transform does, in timm's terms (``input_size``, ``mean``, ``std``, ``crop_pct``,
        ``interpolation``), and the ``dataset``'s name: saved in each checkpoint, so that an exported model's
        config reproduces this run's preprocessing."""
        raise NotImplementedError

    def setup(self, stage: str = 'fit') -> None:
        if self.train_set is None:
            train, test = self.datasets()
            val = test
            if self.holdout:
                if self.holdout >= len(train):
                    raise ValueError(f'holdout must leave training images: {self.holdout} of {len(train)}')
                kept = len(train) - self.holdout
                val = Subset(self.evaluation_view(train, test), range(kept, len(train)))
                train = Subset(train, range(kept))
            self.train_set = self._subset(train, self.train_subset)
            self.val_set = self._subset(val, self.val_subset)
            self.test_set = self.val_set if val is test else test

    @staticmethod
    def evaluation_view(train: Dataset, test: Dataset) -> Dataset:
        """The training images read as the test images are (a torchvision dataset's ``transform``)."""
        view = copy.copy(train)
        view.transform, view.transforms = test.transform, test.transforms
        return view

    @staticmethod
    def _subset(dataset: Dataset, size: Optional[int]) -> Dataset:
        return Subset(dataset, range(min(size, len(dataset)))) if size else dataset

    def _loader(self, dataset: Dataset, shuffle: bool) -> StatefulDataLoader:
        workers = self.num_workers
        return StatefulDataLoader(
            SeededSamples(dataset),
            batch_size=self.batch_size,
            sampler=SeededSampler(len(dataset), self.seed, shuffle),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle,
            worker_init_fn=die_with_parent,
        )

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> StatefulDataLoader:
        return self.val_dataloader()


def cifar_transforms(
    mean: Sequence[float], std: Sequence[float], size: int = 32, padding: int = 4
) -> tuple[T.Compose, T.Compose]:
    """The standard CIFAR augmentation: pad-and-crop plus horizontal flip."""
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    train = T.Compose([T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip(), *normalize])
    return train, T.Compose(normalize)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 through torchvision: ``root`` holds ``cifar-10-batches-py`` (or ``download=True``)."""

    dataset_cls = 'CIFAR10'
    num_classes = 10

    def prepare_data(self) -> None:
        """Downloads (``download=True``) in one process, before any DDP rank sets up, as Lightning asks."""
        if self.download:
            for train in (True, False):
                getattr(datasets, self.dataset_cls)(self.root, train=train, download=True)

    def data_config(self) -> dict:
        return dict(
            dataset=self.dataset_cls.lower(),
            input_size=(3, 32, 32),
            mean=CIFAR_MEAN,
            std=CIFAR_STD,
            crop_pct=1.0,
            interpolation='bilinear',
        )

    def datasets(self) -> tuple[Dataset, Dataset]:
        train_tf, val_tf = cifar_transforms(CIFAR_MEAN, CIFAR_STD)
        cls = getattr(datasets, self.dataset_cls)
        try:
            return (cls(self.root, train=True, transform=train_tf), cls(self.root, train=False, transform=val_tf))
        except RuntimeError as error:
            raise FileNotFoundError(
                f'{self.dataset_cls} not found under {self.root}: pass --data.root DIR with the '
                f'extracted dataset, or --data.download true ({error})'
            ) from None


class CIFAR100DataModule(CIFAR10DataModule):
    dataset_cls = 'CIFAR100'
    num_classes = 100


class ImageNetDataModule(ImageDataModule):
    """ImageNet as an ImageFolder tree (``root/train/<class>/*``, ``root/val/<class>/*``), with timm's
    train and eval transforms resolved from the ``pretrained_cfg`` of ``model``: by default the model the
    LightningModule trains, else ``hb_net_34``."""

    num_classes = 1000

    def __init__(
        self,
        root: str,
        model: Optional[str] = None,
        num_classes: int = 1000,
        batch_size: int = 256,
        num_workers: int = 8,
        train_subset: Optional[int] = None,
        val_subset: Optional[int] = None,
    ):
        super().__init__(root, False, batch_size, num_workers, train_subset, val_subset)
        self.model, self.num_classes = model, num_classes

    def data_config(self) -> dict:
        from timm.data import resolve_data_config

        return dict(dataset='imagenet-1k', **resolve_data_config(model=self._model()))

    def datasets(self) -> tuple[Dataset, Dataset]:
        from timm.data import create_transform, resolve_data_config

        for split in ('train', 'val'):
            if not (self.root / split).is_dir():
                raise FileNotFoundError(
                    f'ImageNet folder {self.root / split} not found: pass --data.root DIR '
                    'holding train/ and val/ class folders'
                )
        config = resolve_data_config(model=self._model())
        train = datasets.ImageFolder(self.root / 'train', create_transform(**config, is_training=True))
        val = datasets.ImageFolder(self.root / 'val', create_transform(**config))
        return train, val

    def _model(self) -> torch.nn.Module:
        """The model whose ``pretrained_cfg`` gives the transforms: ``model`` by name (on the meta device), else
        the one the LightningModule trains (a searched rule's too, which timm's registry does not hold)."""
        import timm

        if self.model is None and self.trainer is not None:
            return self.trainer.lightning_module.model
        return timm.create_model(self.model or 'hb_net_34', device='meta')


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST, 1 channel, padded from 28 to ``image_size`` (32 fits the CIFAR presets), standardised by
    the training set's mean and std (``normalize=False``: pixels in [0, 1], as reconstruction compares them).

    Reads the four original ``.gz`` files of Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets``, or
    ``root``) through torchvision's own reader, offline; ``download=True`` fetches them when they are missing.
    """

    num_classes = 10
    in_chans = 1
    default_root = staticmethod(lambda: DEBIAN_FASHION_MNIST)

    def __init__(
        self,
        root: Optional[str] = None,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 2,
        train_subset: Optional[int] = None,
        val_subset: Optional[int] = None,
        holdout: int = 0,
        image_size: int = 32,
        augment: bool = True,
        normalize: bool = True,
    ):
        super().__init__(root, download, batch_size, num_workers, train_subset, val_subset, holdout)
        if image_size < 28 or (image_size - 28) % 2:
            raise ValueError(f'image_size pads the 28x28 images on both sides: 28, 30, 32, ..., got {image_size}')
        self.image_size, self.augment, self.normalize = image_size, augment, normalize

    def prepare_data(self) -> None:
        source, cache = self.root, fashion_mnist_root() / 'FashionMNIST' / 'raw'
        if all((source / f'{name}.gz').is_file() for name in FASHION_MNIST_MD5):
            cache.mkdir(parents=True, exist_ok=True)
            for name, md5 in FASHION_MNIST_MD5.items():  # re-read each time: --data.root is never ignored
                decompress_verified(source / f'{name}.gz', cache / name, md5)
        elif not self.download:
            raise FileNotFoundError(
                f'Fashion-MNIST .gz files not found in {source}: apt-get install '
                'dataset-fashion-mnist, pass --data.root DIR, or --data.download true'
            )
        datasets.FashionMNIST(fashion_mnist_root(), train=True, download=True)  # downloads verify the .gz md5s

    def data_config(self) -> dict:  # timm's eval transform pads 28 to image_size by this crop_pct (see the manifest)
        return dict(
            dataset='fashion_mnist',
            input_size=(1, self.image_size, self.image_size),
            mean=FASHION_MNIST_MEAN if self.normalize else (0.0,),
            std=FASHION_MNIST_STD if self.normalize else (1.0,),
            crop_pct=self.image_size / 28,
            interpolation='bilinear',
        )

    def datasets(self) -> tuple[Dataset, Dataset]:
        pad = (self.image_size - 28) // 2
        normalize = [T.Pad(pad), T.ToTensor()]  # pixels in [0, 1]; then standardised unless ``normalize=False``
        normalize += [T.Normalize(FASHION_MNIST_MEAN, FASHION_MNIST_STD)] if self.normalize else []
        augment = [T.RandomCrop(28, padding=2), T.RandomHorizontalFlip()] if self.augment else []
        train = datasets.FashionMNIST(fashion_mnist_root(), train=True, transform=T.Compose(augment + normalize))
        val = datasets.FashionMNIST(fashion_mnist_root(), train=False, transform=T.Compose(normalize))
        return train, val


def fashion_mnist_flat(train: bool, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as the MLP benchmarks read it: ``rows`` of the training or test images, flattened to 784
    floats in [0, 1], and their labels (the files prepared and verified as the data module does)."""
    FashionMNISTDataModule().prepare_data()
    data = datasets.FashionMNIST(fashion_mnist_root(), train=train)
    images = data.data[rows]
    return images.reshape(len(images), -1).float() / 255, data.targets[rows]


class SyntheticDataModule(ImageDataModule):
    """Random images (torchvision ``FakeData``): a synthetic stand-in for smoke tests, never for results."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        image_size: int = 32,
        length: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
    ):
        super().__init__(None, False, batch_size, num_workers)
        if min(num_classes, in_chans, image_size, length) < 1:
            raise ValueError(
                f'num_classes, in_chans, image_size and length must be at least 1, got {num_classes}, '
                f'{in_chans}, {image_size} and {length}'
            )
        self.num_classes, self.in_chans, self.image_size, self.length = num_classes, in_chans, image_size, length

    def data_config(self) -> dict:
        return dict(
            dataset='synthetic',
            input_size=(self.in_chans, self.image_size, self.image_size),
            mean=(0.0,) * self.in_chans,
            std=(1.0,) * self.in_chans,
            crop_pct=1.0,
            interpolation='bilinear',
        )

    def datasets(self) -> tuple[Dataset, Dataset]:
        shape = (self.in_chans, self.image_size, self.image_size)
        make = lambda seed: datasets.FakeData(  # noqa: E731
            self.length,
            shape,
            self.num_classes,
            T.ToTensor(),
            random_offset=seed,
        )
        return make(0), make(10_000)
