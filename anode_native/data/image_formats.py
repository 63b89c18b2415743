"""Readers for the standard on-disk image formats, returning numpy arrays.

These functions know file formats and directory layouts, nothing about torch:
- MNIST / Fashion-MNIST idx files (``*-ubyte`` or ``*-ubyte.gz``), flat in a directory or in
  torchvision's ``<root>/MNIST/raw`` (``<root>/FashionMNIST/raw``) layout;
- CIFAR-10's python batches (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``);
- SVHN's ``train_32x32.mat`` / ``test_32x32.mat``.

Every reader returns ``(images, labels)``: images uint8 ``[N, C, H, W]``, labels int64 ``[N]`` in
``0..num_classes-1``. A missing file raises :class:`DatasetNotFoundError` (a FileNotFoundError)
and a malformed one :class:`DatasetFormatError` (a ValueError); both name the file expected and
the directories searched.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from typing import Sequence, Tuple

import numpy as np

Arrays = Tuple[np.ndarray, np.ndarray]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is not where it was looked for. The message names the file and directories."""


class DatasetFormatError(ValueError):
    """A dataset file exists but is not in the expected format (bad magic number, sizes, keys)."""


def _find_file(dataset: str, names: Sequence[str], dirs: Sequence[str], hint: str = "") -> str:
    """First existing ``dir/name`` over ``dirs`` x ``names``, else a DatasetNotFoundError
    saying e.g. "MNIST: expected a or a.gz in /x or /x/MNIST/raw"."""
    for d in dirs:
        for n in names:
            path = os.path.join(d, n)
            if os.path.isfile(path):
                return path
    msg = f"{dataset}: expected {' or '.join(names)} in {' or '.join(dirs)}"
    raise DatasetNotFoundError(msg + (f" ({hint})" if hint else ""))


# ---------------------------------------------------------------------------------------------
# idx (MNIST, Fashion-MNIST)

# idx type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions
MNIST_LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension


def read_idx(path: str) -> Tuple[int, np.ndarray]:
    """Reads an idx file (gzip-compressed if its name ends in .gz); returns (magic, array).

    Checks the header (two zero bytes, a known type code, the dimension count) and that the payload
    holds exactly prod(dims) elements.
    """
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DatasetFormatError(f"cannot read idx file {path}: {e}") from e
    if len(raw) < 4:
        raise DatasetFormatError(f"{path}: {len(raw)} bytes, too short for an idx header")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DatasetFormatError(
            f"{path}: bad idx magic number 0x{magic:08x} (expected 0x0000TTDD: type TT in "
            f"{sorted(hex(t) for t in _IDX_DTYPES)}, DD >= 1 dimensions)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: truncated idx header ({len(raw)} bytes, need {header})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetFormatError(
            f"{path}: idx dims {dims} need {expected} bytes, file has {len(raw)}")
    return magic, np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def mnist_layout_dirs(root: str, subdir: str = "MNIST") -> list:
    """Directories searched for idx files: root itself, then torchvision's root/<subdir>/raw."""
    return [root, os.path.join(root, subdir, "raw")]


def read_mnist(root: str, train: bool = True, dataset: str = "MNIST",
               subdir: str = "MNIST") -> Arrays:
    """MNIST-format idx pair (Fashion-MNIST: ``dataset="Fashion-MNIST", subdir="FashionMNIST"``).

    Returns images uint8 [N, 1, 28, 28] and labels int64 [N] in 0..9.
    """
    prefix = "train" if train else "t10k"
    dirs = mnist_layout_dirs(root, subdir)
    paths = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{prefix}-{kind}"
        paths.append(_find_file(dataset, [stem, stem + ".gz"], dirs))
    img_path, lbl_path = paths

    magic, images = read_idx(img_path)
    if magic != MNIST_IMAGES_MAGIC or images.shape[1:] != (28, 28):
        raise DatasetFormatError(
            f"{dataset}: {img_path} has magic {magic} and shape {list(images.shape)}; expected "
            f"magic {MNIST_IMAGES_MAGIC} (uint8 images) and shape [N, 28, 28]")
    magic, labels = read_idx(lbl_path)
    if magic != MNIST_LABELS_MAGIC:
        raise DatasetFormatError(
            f"{dataset}: {lbl_path} has magic {magic}; expected {MNIST_LABELS_MAGIC} (uint8 labels)")
    if labels.shape[0] != images.shape[0]:
        raise DatasetFormatError(
            f"{dataset}: {img_path} holds {images.shape[0]} images but {lbl_path} holds "
            f"{labels.shape[0]} labels")
    _check_label_range(dataset, lbl_path, labels, 10)
    return images[:, None, :, :], labels.astype(np.int64)


def _check_label_range(dataset: str, path: str, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetFormatError(
            f"{dataset}: labels in {path} range over {labels.min()}..{labels.max()}, "
            f"expected 0..{num_classes - 1}")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches

CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCHES = ("test_batch",)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only, so a tampered batch file cannot run
    code. The CIFAR batches were pickled by Python 2 with numpy; this is all they need."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object"),
        ("_codecs", "encode"),  # bytes in protocol 0-2 pickles written by Python 3
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data batch")
        return super().find_class(module, name)


def cifar10_dirs(root: str) -> list:
    """Directories searched for the batches: root/cifar-10-batches-py (the layout of the official
    tarball and of torchvision), then root itself."""
    return [os.path.join(root, CIFAR10_DIRNAME), root]


def read_cifar10_batch(path: str) -> Arrays:
    """One CIFAR-10 python batch: a pickled dict with b'data' uint8 [N, 3072] (1024 red, 1024 green,
    1024 blue values, each plane row-major 32x32) and b'labels' (N ints in 0..9)."""
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise DatasetFormatError(f"CIFAR-10: cannot unpickle {path}: {e}") from e
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"CIFAR-10: {path} holds a {type(batch).__name__}, expected a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DatasetFormatError(
            f"CIFAR-10: {path} lacks b'data' or b'labels' (keys: {sorted(map(str, batch))})")
    data = batch["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072):
        desc = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetFormatError(f"CIFAR-10: {path}: b'data' is {desc}, expected uint8 [N, 3072]")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(f"CIFAR-10: {path}: b'labels' is not a list of ints: {e}") from e
    if labels.shape[0] != data.shape[0]:
        raise DatasetFormatError(
            f"CIFAR-10: {path} holds {data.shape[0]} images but {labels.shape[0]} labels")
    _check_label_range("CIFAR-10", path, labels, 10)
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(root: str, train: bool = True) -> Arrays:
    """CIFAR-10 train (data_batch_1..5) or test (test_batch) set: uint8 [N, 3, 32, 32], int64 [N]."""
    hint = ""
    if os.path.isfile(os.path.join(root, "cifar-10-python.tar.gz")):
        hint = f"extract {os.path.join(root, 'cifar-10-python.tar.gz')} in {root}"
    names = CIFAR10_TRAIN_BATCHES if train else CIFAR10_TEST_BATCHES
    paths = [_find_file("CIFAR-10", [n], cifar10_dirs(root), hint) for n in names]
    parts = [read_cifar10_batch(p) for p in paths]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


# ---------------------------------------------------------------------------------------------
# SVHN .mat files

def read_svhn(root: str, train: bool = True) -> Arrays:
    """SVHN cropped digits from train_32x32.mat / test_32x32.mat (MATLAB v5, read with scipy).

    The file holds X uint8 [32, 32, 3, N] and y [N, 1] in 1..10, where 10 means the digit 0.
    Returns uint8 [N, 3, 32, 32] and int64 [N] in 0..9 (label = digit).
    """
    import scipy.io  # scipy is a dependency of the data layer only

    name = "train_32x32.mat" if train else "test_32x32.mat"
    path = _find_file("SVHN", [name], [root, os.path.join(root, "svhn")])
    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, OSError, ...
        raise DatasetFormatError(f"SVHN: cannot read {path} as a MATLAB file: {e}") from e
    if "X" not in mat or "y" not in mat:
        raise DatasetFormatError(f"SVHN: {path} lacks variable 'X' or 'y'")
    x, y = mat["X"], np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetFormatError(f"SVHN: {path}: X has shape {list(x.shape)}, expected [32, 32, 3, N]")
    if x.dtype != np.uint8:
        raise DatasetFormatError(f"SVHN: {path}: X has dtype {x.dtype}, expected uint8")
    y = y.reshape(-1).astype(np.int64)
    if y.shape[0] != x.shape[3]:
        raise DatasetFormatError(f"SVHN: {path} holds {x.shape[3]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DatasetFormatError(
            f"SVHN: labels in {path} range over {y.min()}..{y.max()}, expected 1..10 (10 = digit 0)")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


__all__ = [
    "DatasetNotFoundError", "DatasetFormatError", "read_idx", "read_mnist", "mnist_layout_dirs",
    "read_cifar10", "read_cifar10_batch", "cifar10_dirs", "read_svhn",
    "MNIST_IMAGES_MAGIC", "MNIST_LABELS_MAGIC", "CIFAR10_DIRNAME",
]
