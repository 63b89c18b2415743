"""Image classification datasets for the paper's image experiments.

``load_image_dataset(name, root, train=True, subset=None, download=False)`` returns an
:class:`ImageDataset`, a ``TensorDataset`` of float32 images ``[N, C, H, W]`` scaled to [0, 1]
(optionally normalized per channel) and int64 labels ``[N]``. Names:

- ``mnist``, ``fashion_mnist``: idx files (``*-ubyte`` or ``*-ubyte.gz``) in ``root`` or in
  torchvision's ``root/MNIST/raw`` / ``root/FashionMNIST/raw``; 1 x 28 x 28, 10 classes.
- ``cifar10``: python batches in ``root/cifar-10-batches-py`` (or in ``root``); 3 x 32 x 32.
- ``svhn``: ``root/train_32x32.mat`` / ``root/test_32x32.mat``; 3 x 32 x 32, label = digit.
- ``digits``: scikit-learn's 8 x 8 digits (1797 images shipped with scikit-learn, values 0..16
  scaled by 1/16); ``root`` is ignored. A fixed seeded split gives 1437 train / 360 test images.

Nothing is downloaded unless ``download=True``, which needs torchvision (and a network); the
files then land in torchvision's layout under ``root``, which the readers understand.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .image_formats import (
    DatasetFormatError,
    DatasetNotFoundError,
    read_cifar10,
    read_mnist,
    read_svhn,
)


class ImageSpec(NamedTuple):
    """Shape and class count of a dataset; unpacks as (channels, height, width, num_classes)."""

    channels: int
    height: int
    width: int
    num_classes: int

    @property
    def img_size(self) -> Tuple[int, int, int]:
        """(channels, height, width), the ``img_size`` a ConvODENet takes."""
        return (self.channels, self.height, self.width)


IMAGE_SPECS = {
    "mnist": ImageSpec(1, 28, 28, 10),
    "fashion_mnist": ImageSpec(1, 28, 28, 10),
    "cifar10": ImageSpec(3, 32, 32, 10),
    "svhn": ImageSpec(3, 32, 32, 10),
    "digits": ImageSpec(1, 8, 8, 10),
}
IMAGE_DATASETS = tuple(IMAGE_SPECS)

# Per-channel mean and standard deviation of the [0, 1]-scaled training images, used by
# ``normalize=True``. MNIST, Fashion-MNIST, CIFAR-10 and SVHN: the commonly quoted values;
# digits: computed over all 1797 images.
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "digits": ((0.3053,), (0.3760,)),
}

_ALIASES = {"fashionmnist": "fashion_mnist", "cifar_10": "cifar10", "cifar": "cifar10"}

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


class DownloadUnavailableError(RuntimeError):
    """``download=True`` was asked for but cannot be done (torchvision missing, or the fetch failed)."""


def canonical_name(name: str) -> str:
    """Lower-cases and maps aliases ('Fashion-MNIST' -> 'fashion_mnist'); ValueError if unknown."""
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in IMAGE_SPECS:
        raise ValueError(f"unknown image dataset {name!r}; known: {', '.join(IMAGE_DATASETS)}")
    return key


def image_spec(name: str) -> ImageSpec:
    """(channels, height, width, num_classes) of a dataset name."""
    return IMAGE_SPECS[canonical_name(name)]


class ImageDataset(TensorDataset):
    """A TensorDataset of (image float32 [C, H, W], label int64) pairs, with its provenance."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, name: str, train: bool,
                 root: Optional[str] = None, normalized: bool = False):
        super().__init__(images, labels)
        self.name = name
        self.train = train
        self.root = root
        self.normalized = normalized
        self.spec = IMAGE_SPECS[name]

    @property
    def images(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def labels(self) -> torch.Tensor:
        return self.tensors[1]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return (f"ImageDataset({self.name!r}, {split}, n={len(self)}, "
                f"shape={list(self.images.shape[1:])}, normalized={self.normalized})")


# ---------------------------------------------------------------------------------------------
# Raw uint8 arrays per dataset

def _read_digits(train: bool) -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships with scikit-learn; no network

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # integer values 0..16
    labels = digits.target.astype(np.int64)
    order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(labels))
    idx = order[DIGITS_TEST_SIZE:] if train else order[:DIGITS_TEST_SIZE]
    idx = np.sort(idx)  # keep file order inside each split
    return images[idx][:, None, :, :], labels[idx]


_READERS = {
    "mnist": lambda root, train: read_mnist(root, train, "MNIST", "MNIST"),
    "fashion_mnist": lambda root, train: read_mnist(root, train, "Fashion-MNIST", "FashionMNIST"),
    "cifar10": read_cifar10,
    "svhn": read_svhn,
}


def download_image_dataset(name: str, root: str, train: bool = True) -> None:
    """Fetches a dataset's files into ``root`` with torchvision (MNIST/FashionMNIST/CIFAR10/SVHN
    classes), in the layout the readers expect. Raises DownloadUnavailableError without torchvision
    or when the fetch fails."""
    name = canonical_name(name)
    if name == "digits":
        return  # ships with scikit-learn
    try:
        import torchvision.datasets as tvd
    except ImportError as e:
        raise DownloadUnavailableError(
            f"download=True for {name!r} needs torchvision, which is not installed "
            f"(pip install torchvision), or place the files in {root} yourself") from e
    os.makedirs(root, exist_ok=True)
    try:
        if name == "mnist":
            tvd.MNIST(root, train=train, download=True)
        elif name == "fashion_mnist":
            tvd.FashionMNIST(root, train=train, download=True)
        elif name == "cifar10":
            tvd.CIFAR10(root, train=train, download=True)
        elif name == "svhn":
            tvd.SVHN(root, split="train" if train else "test", download=True)
    except Exception as e:  # network errors, checksum mismatches, ...
        raise DownloadUnavailableError(f"downloading {name!r} into {root} failed: {e}") from e


def select_subset(n: int, subset: Optional[int], seed: Optional[int] = None) -> Optional[np.ndarray]:
    """Indices of a subset of ``range(n)``: the first ``subset`` when ``seed`` is None, else a
    seeded random ``subset`` (sorted). None when ``subset`` is None (keep all)."""
    if subset is None:
        return None
    if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset <= 0:
        raise ValueError(f"subset must be a positive int or None, got {subset!r}")
    if subset > n:
        raise ValueError(f"subset={subset} is larger than the dataset ({n} examples)")
    if seed is None:
        return np.arange(subset)
    gen = torch.Generator().manual_seed(int(seed))
    return np.sort(torch.randperm(n, generator=gen)[:subset].numpy())


def _to_float_images(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 in [0, 1]; float input is taken as already scaled."""
    if images.dtype == np.uint8:
        return torch.from_numpy(images.astype(np.float32)).div_(255.0)
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))


Normalize = Union[bool, Tuple[Sequence[float], Sequence[float]]]


def _normalize(images: torch.Tensor, name: str, normalize: Normalize) -> bool:
    """In place: (x - mean) / std per channel. ``normalize``: False, True (NORMALIZATION table) or
    (mean, std) sequences of length C. Returns whether it normalized."""
    if normalize is False or normalize is None:
        return False
    c = images.shape[1]
    bad = ValueError(f"normalize for {name!r} must be False, True or (mean, std) with 1 or {c} "
                     f"values each and std > 0; got {normalize!r}")
    try:
        mean, std = NORMALIZATION[name] if normalize is True else normalize
        mean = torch.as_tensor(mean, dtype=images.dtype).reshape(-1)
        std = torch.as_tensor(std, dtype=images.dtype).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise bad from None
    if mean.numel() not in (1, c) or std.numel() not in (1, c) or bool((std <= 0).any()):
        raise bad
    images.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return True


def load_image_dataset(name: str, root: Optional[str] = None, train: bool = True,
                       subset: Optional[int] = None, download: bool = False, *,
                       subset_seed: Optional[int] = None,
                       normalize: Normalize = False) -> ImageDataset:
    """Loads a train or test split as an :class:`ImageDataset`.

    name: 'mnist', 'fashion_mnist', 'cifar10', 'svhn' or 'digits'.
    root: directory holding the files (see the module docstring); unused for 'digits'.
    subset: keep only this many examples: the first ones, or a random sample when ``subset_seed``
        is given (the same seed gives the same sample).
    download: fetch missing files with torchvision; without torchvision, DownloadUnavailableError.
    normalize: False (images in [0, 1]), True (per-channel NORMALIZATION[name]) or (mean, std).

    Raises DatasetNotFoundError (a FileNotFoundError) naming the file and directories expected,
    DatasetFormatError (a ValueError) for a malformed file, ValueError for a bad argument.
    """
    name = canonical_name(name)
    if name == "digits":
        images, labels = _read_digits(train)
        root = None
    else:
        if root is None or str(root) == "":
            raise ValueError(f"{name!r} needs root, the directory holding its files")
        root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        try:
            images, labels = _READERS[name](root, train)
        except DatasetNotFoundError:
            if not download:
                raise
            download_image_dataset(name, root, train)
            images, labels = _READERS[name](root, train)

    idx = select_subset(len(labels), subset, subset_seed)
    if idx is not None:
        images, labels = images[idx], labels[idx]
    x = _to_float_images(images)
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    normalized = _normalize(x, name, normalize)
    return ImageDataset(x, y, name, train, root, normalized)


def image_dataset_factory(name: str):
    """A keyword-only loader for one dataset name, for registries that read a factory's parameters
    from its signature: ``factory(root=None, train=True, subset=None, subset_seed=None,
    normalize=False, download=False)``."""
    name = canonical_name(name)

    def factory(root: Optional[str] = None, train: bool = True, subset: Optional[int] = None,
                subset_seed: Optional[int] = None, normalize: Normalize = False,
                download: bool = False) -> ImageDataset:
        return load_image_dataset(name, root, train, subset, download,
                                  subset_seed=subset_seed, normalize=normalize)

    factory.__name__ = f"load_{name}"
    factory.__doc__ = f"load_image_dataset({name!r}, ...) with keyword arguments."
    return factory


def load_image_splits(name: str, root: Optional[str] = None, subset: Optional[int] = None,
                      test_subset: Optional[int] = None, download: bool = False,
                      **kwargs) -> Tuple[ImageDataset, ImageDataset]:
    """(train, test) datasets; ``subset`` applies to train and ``test_subset`` to test."""
    train = load_image_dataset(name, root, True, subset, download, **kwargs)
    test = load_image_dataset(name, root, False, test_subset, download, **kwargs)
    return train, test


__all__ = [
    "ImageSpec", "IMAGE_SPECS", "IMAGE_DATASETS", "NORMALIZATION", "ImageDataset",
    "DatasetNotFoundError", "DatasetFormatError", "DownloadUnavailableError",
    "canonical_name", "image_spec", "load_image_dataset", "load_image_splits",
    "download_image_dataset", "select_subset", "image_dataset_factory",
]
