"""LightningDataModules: CIFAR-10/100, ImageNet (ImageFolder), Fashion-MNIST, and a synthetic smoke-test set."""
import gzip
import os
import shutil
from pathlib import Path
from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms as T

from optnets.models.network import CIFAR_MEAN, CIFAR_STD

DEBIAN_FASHION_MNIST = Path('/usr/share/datasets/fashion-mnist')
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


def default_root() -> Path:
    return Path(os.environ.get('OPTNETS_DATA', Path.home() / '.cache' / 'optnets' / 'data'))


class ImageDataModule(L.LightningDataModule):
    """Shared loaders. ``train_subset`` / ``val_subset`` take the first N images (quick runs)."""
    num_classes: int = 10
    in_chans: int = 3

    def __init__(self, root: Optional[str] = None, download: bool = False, batch_size: int = 128,
                 num_workers: int = 2, train_subset: Optional[int] = None, val_subset: Optional[int] = None):
        super().__init__()
        self.save_hyperparameters()  # the concrete DataModule's arguments, for the logs
        self.root = Path(root).expanduser() if root else default_root()
        self.download, self.batch_size, self.num_workers = download, batch_size, num_workers
        self.train_subset, self.val_subset = train_subset, val_subset
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None

    def datasets(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str = 'fit'):
        if self.train_set is None:
            train, val = self.datasets()
            self.train_set = self._subset(train, self.train_subset)
            self.val_set = self._subset(val, self.val_subset)

    @staticmethod
    def _subset(dataset: Dataset, size: Optional[int]) -> Dataset:
        return Subset(dataset, range(min(size, len(dataset)))) if size else dataset

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        workers = self.num_workers
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(), drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


def cifar_transforms(mean, std, size: int = 32, padding: int = 4) -> tuple[T.Compose, T.Compose]:
    """The standard CIFAR augmentation: pad-and-crop plus horizontal flip."""
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    train = T.Compose([T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip(), *normalize])
    return train, T.Compose(normalize)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 through torchvision: ``root`` holds ``cifar-10-batches-py`` (or ``download=True``)."""
    dataset_cls = 'CIFAR10'
    num_classes = 10

    def datasets(self):
        train_tf, val_tf = cifar_transforms(CIFAR_MEAN, CIFAR_STD)
        cls = getattr(datasets, self.dataset_cls)
        try:
            return (cls(self.root, train=True, transform=train_tf, download=self.download),
                    cls(self.root, train=False, transform=val_tf, download=self.download))
        except RuntimeError as error:
            raise FileNotFoundError(f'{self.dataset_cls} not found under {self.root}: pass --data.root DIR with the '
                                    f'extracted dataset, or --data.download true ({error})') from None


class CIFAR100DataModule(CIFAR10DataModule):
    dataset_cls = 'CIFAR100'
    num_classes = 100


class ImageNetDataModule(ImageDataModule):
    """ImageNet as an ImageFolder tree (``root/train/<class>/*``, ``root/val/<class>/*``), with timm's
    train and eval transforms resolved from the model's ``pretrained_cfg``."""
    num_classes = 1000

    def __init__(self, root: str, model: str = 'hb_net_34', num_classes: int = 1000, batch_size: int = 256,
                 num_workers: int = 8, train_subset: Optional[int] = None, val_subset: Optional[int] = None):
        super().__init__(root, False, batch_size, num_workers, train_subset, val_subset)
        self.model, self.num_classes = model, num_classes

    def datasets(self):
        import timm
        from timm.data import create_transform, resolve_data_config
        for split in ('train', 'val'):
            if not (self.root / split).is_dir():
                raise FileNotFoundError(f'ImageNet folder {self.root / split} not found: pass --data.root DIR '
                                        'holding train/ and val/ class folders')
        config = resolve_data_config(model=timm.create_model(self.model, device='meta'))
        train = datasets.ImageFolder(self.root / 'train', create_transform(**config, is_training=True))
        val = datasets.ImageFolder(self.root / 'val', create_transform(**config))
        return train, val


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST, 1 channel, padded from 28 to ``image_size`` (32 fits the CIFAR presets).

    Reads the four original ``.gz`` files of Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets``, or
    ``root``) through torchvision's own reader, offline; ``download=True`` fetches them when they are missing.
    """
    num_classes = 10
    in_chans = 1

    def __init__(self, root: Optional[str] = None, download: bool = False, batch_size: int = 128,
                 num_workers: int = 2, train_subset: Optional[int] = None, val_subset: Optional[int] = None,
                 image_size: int = 32, augment: bool = True):
        super().__init__(root, download, batch_size, num_workers, train_subset, val_subset)
        self.raw_files = Path(root).expanduser() if root else DEBIAN_FASHION_MNIST  # the four .gz files
        self.image_size, self.augment = image_size, augment

    def prepare_data(self):
        cache = default_root() / 'FashionMNIST' / 'raw'
        source = self.raw_files
        names = [name for name, _ in datasets.FashionMNIST.resources]
        if all((source / name).is_file() for name in names):
            cache.mkdir(parents=True, exist_ok=True)
            for name in names:  # decompressed where torchvision's reader finds them, so it never downloads
                target = cache / name.removesuffix('.gz')
                if not target.is_file():
                    partial = target.with_suffix('.partial')
                    with gzip.open(source / name) as packed, open(partial, 'wb') as out:
                        shutil.copyfileobj(packed, out)
                    partial.rename(target)  # atomic: an interrupted copy never passes for a complete one
        elif not self.download:
            raise FileNotFoundError(f'Fashion-MNIST .gz files not found in {source}: apt-get install '
                                    'dataset-fashion-mnist, pass --data.root DIR, or --data.download true')
        datasets.FashionMNIST(default_root(), train=True, download=True)

    def datasets(self):
        pad = (self.image_size - 28) // 2
        normalize = [T.Pad(pad), T.ToTensor(), T.Normalize(FASHION_MNIST_MEAN, FASHION_MNIST_STD)]
        augment = [T.RandomCrop(28, padding=2), T.RandomHorizontalFlip()] if self.augment else []
        train = datasets.FashionMNIST(default_root(), train=True, transform=T.Compose(augment + normalize))
        val = datasets.FashionMNIST(default_root(), train=False, transform=T.Compose(normalize))
        return train, val


class SyntheticDataModule(ImageDataModule):
    """Random images (torchvision ``FakeData``): a synthetic stand-in for smoke tests, never for results."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, image_size: int = 32, length: int = 64,
                 batch_size: int = 16, num_workers: int = 0):
        super().__init__(None, False, batch_size, num_workers)
        self.num_classes, self.in_chans, self.image_size, self.length = num_classes, in_chans, image_size, length

    def datasets(self):
        shape = (self.in_chans, self.image_size, self.image_size)
        make = lambda seed: datasets.FakeData(self.length, shape, self.num_classes,  # noqa: E731
                                              T.ToTensor(), random_offset=seed)
        return make(0), make(10_000)
