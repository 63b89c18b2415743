"""Image dataset readers: small fixtures written here into tmp_path, the clear errors for missing
and malformed files, scikit-learn's digits, and the real MNIST files when present."""

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from anode_native.data.image_formats import read_idx
from anode_native.data.images import (
    IMAGE_DATASETS,
    DatasetFormatError,
    DatasetNotFoundError,
    DownloadUnavailableError,
    ImageDataset,
    image_spec,
    load_image_dataset,
    load_image_splits,
    select_subset,
)
from conftest import shared_mnist_dir

REPO_ROOT = Path(__file__).resolve().parents[1]




# ---------------------------------------------------------------------------------------------
# fixture writers

def idx_bytes(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(">u1").tobytes()


def write_mnist(directory, n_train=12, n_test=7, gz=True, seed=0):
    """Writes the four idx files; returns {split: (images uint8 [N,28,28], labels [N])}."""
    rng = np.random.RandomState(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, size=n).astype(np.uint8)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(arr)
            if gz:
                with gzip.open(directory / (stem + ".gz"), "wb") as f:
                    f.write(data)
            else:
                (directory / stem).write_bytes(data)
        out[prefix] = (images, labels)
    return out


def write_cifar_batch(path, n, seed):
    rng = np.random.RandomState(seed)
    data = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
    labels = [int(v) for v in rng.randint(0, 10, size=n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"fixture", b"data": data, b"labels": labels}, f)
    return data, labels


def write_cifar(root, per_batch=3):
    directory = root / "cifar-10-batches-py"
    train = [write_cifar_batch(directory / f"data_batch_{i}", per_batch, i) for i in range(1, 6)]
    test = write_cifar_batch(directory / "test_batch", per_batch + 1, 99)
    return train, test


def write_svhn(root, name="train_32x32.mat", n=6, labels=None):
    import scipy.io

    rng = np.random.RandomState(3)
    x = rng.randint(0, 256, size=(32, 32, 3, n)).astype(np.uint8)
    y = np.array(labels if labels is not None else [1, 2, 10, 5, 10, 9][:n], dtype=np.uint8)[:, None]
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(root / name), {"X": x, "y": y})
    return x, y


# ---------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_reader_layouts(tmp_path, gz, layout):
    directory = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    ref = write_mnist(directory, gz=gz)
    for train, prefix in ((True, "train"), (False, "t10k")):
        ds = load_image_dataset("mnist", tmp_path, train=train)
        images, labels = ref[prefix]
        assert isinstance(ds, ImageDataset) and isinstance(ds, torch.utils.data.TensorDataset)
        assert ds.images.shape == (len(labels), 1, 28, 28) and ds.images.dtype == torch.float32
        assert ds.labels.dtype == torch.int64
        torch.testing.assert_close(ds.images[:, 0], torch.from_numpy(images).float() / 255)
        assert ds.labels.tolist() == labels.tolist()
        x, y = ds[0]
        assert x.shape == (1, 28, 28) and y.item() == labels[0]


def test_fashion_mnist_torchvision_layout(tmp_path):
    ref = write_mnist(tmp_path / "FashionMNIST" / "raw", n_train=5)
    ds = load_image_dataset("fashion_mnist", tmp_path)
    assert len(ds) == 5 and ds.labels.tolist() == ref["train"][1].tolist()
    assert load_image_dataset("Fashion-MNIST", tmp_path).name == "fashion_mnist"
    # MNIST files do not stand in for Fashion-MNIST's torchvision directory, and vice versa
    with pytest.raises(DatasetNotFoundError, match=r"MNIST/raw$"):
        load_image_dataset("mnist", tmp_path)


def test_mnist_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_image_dataset("mnist", tmp_path)
    msg = str(info.value)
    assert msg == (f"MNIST: expected train-images-idx3-ubyte or train-images-idx3-ubyte.gz in "
                   f"{tmp_path} or {tmp_path / 'MNIST' / 'raw'}")
    # a missing label file is named too
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte.gz in"):
        load_image_dataset("mnist", tmp_path, train=False)


def _corrupt(path, data):
    with gzip.open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("case, pattern", [
    ("bad_magic", "bad idx magic number 0x01000803"),
    ("labels_as_images", "expected magic 2051"),
    ("truncated", r"idx dims \[12, 28, 28\] need 9424 bytes, file has 9423"),
    ("short", "too short for an idx header"),
    ("count_mismatch", "holds 12 images but .*train-labels-idx1-ubyte.gz holds 11 labels"),
    ("label_range", r"range over \d\.\.12, expected 0\.\.9"),
    ("not_gzip", "cannot read idx file"),
])
def test_mnist_malformed(tmp_path, case, pattern):
    ref = write_mnist(tmp_path)
    images, labels = ref["train"]
    img_path = tmp_path / "train-images-idx3-ubyte.gz"
    lbl_path = tmp_path / "train-labels-idx1-ubyte.gz"
    good = idx_bytes(images)
    if case == "bad_magic":
        _corrupt(img_path, b"\x01" + good[1:])
    elif case == "labels_as_images":
        _corrupt(img_path, idx_bytes(labels))
    elif case == "truncated":
        _corrupt(img_path, good[:-1])
    elif case == "short":
        _corrupt(img_path, b"\x00\x00")
    elif case == "count_mismatch":
        _corrupt(lbl_path, idx_bytes(labels[:-1]))
    elif case == "label_range":
        bad = labels.copy()
        bad[3] = 12
        _corrupt(lbl_path, idx_bytes(bad))
    elif case == "not_gzip":
        img_path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DatasetFormatError, match=pattern) as info:
        load_image_dataset("mnist", tmp_path)
    assert isinstance(info.value, ValueError)
    assert str(tmp_path) in str(info.value)


def test_read_idx_other_types(tmp_path):
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    path = tmp_path / "x-idx2-int"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3) + arr.tobytes())
    magic, out = read_idx(str(path))
    assert magic == 0x0C02 and out.tolist() == arr.tolist()


# ---------------------------------------------------------------------------------------------
# CIFAR-10

def test_cifar10_reader(tmp_path):
    train_ref, test_ref = write_cifar(tmp_path)
    train = load_image_dataset("cifar10", tmp_path)
    test = load_image_dataset("cifar10", tmp_path, train=False)
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    data0, labels0 = train_ref[0]
    # channel planes: the first 1024 values are red, row-major
    assert train.images[0, 0, 0, 1].item() == pytest.approx(data0[0, 1] / 255)
    assert train.images[0, 1, 0, 0].item() == pytest.approx(data0[0, 1024] / 255)
    assert train.images[0, 2, 31, 31].item() == pytest.approx(data0[0, 3071] / 255)
    assert train.labels.tolist() == sum((lab for _, lab in train_ref), [])
    assert test.labels.tolist() == test_ref[1]
    assert train.labels.dtype == torch.int64 and image_spec("cifar10") == (3, 32, 32, 10)


def test_cifar10_flat_directory(tmp_path):
    for i in range(1, 6):
        write_cifar_batch(tmp_path / f"data_batch_{i}", 2, i)
    assert len(load_image_dataset("cifar10", tmp_path)) == 10


def test_cifar10_missing_and_malformed(tmp_path):
    with pytest.raises(DatasetNotFoundError,
                       match="CIFAR-10: expected data_batch_1 in .*cifar-10-batches-py or "):
        load_image_dataset("cifar10", tmp_path)
    write_cifar(tmp_path)
    directory = tmp_path / "cifar-10-batches-py"
    (directory / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_4"):
        load_image_dataset("cifar10", tmp_path)
    (directory / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DatasetFormatError, match="cannot unpickle .*test_batch"):
        load_image_dataset("cifar10", tmp_path, train=False)
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DatasetFormatError, match=r"expected uint8 \[N, 3072\]"):
        load_image_dataset("cifar10", tmp_path, train=False)
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({b"images": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(DatasetFormatError, match="lacks b'data' or b'labels'"):
        load_image_dataset("cifar10", tmp_path, train=False)


def test_cifar10_refuses_code_in_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DatasetFormatError, match="is not allowed"):
        load_image_dataset("cifar10", tmp_path, train=False)


# ---------------------------------------------------------------------------------------------
# SVHN

def test_svhn_reader(tmp_path):
    x, y = write_svhn(tmp_path)
    ds = load_image_dataset("svhn", tmp_path)
    assert ds.images.shape == (6, 3, 32, 32)
    assert ds.labels.tolist() == [1, 2, 0, 5, 0, 9]  # 10 means digit 0
    # X is [H, W, C, N]
    torch.testing.assert_close(ds.images[4, 2, 5, 7], torch.tensor(x[5, 7, 2, 4] / 255, dtype=torch.float32))
    write_svhn(tmp_path, "test_32x32.mat", n=2)
    assert len(load_image_dataset("svhn", tmp_path, train=False)) == 2


def test_svhn_missing_and_malformed(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=f"SVHN: expected train_32x32.mat in {tmp_path}"):
        load_image_dataset("svhn", tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetFormatError, match="cannot read .*train_32x32.mat"):
        load_image_dataset("svhn", tmp_path)
    write_svhn(tmp_path, labels=[0, 1, 2, 3, 4, 5])
    with pytest.raises(DatasetFormatError, match=r"range over 0\.\.5, expected 1\.\.10"):
        load_image_dataset("svhn", tmp_path)
    import scipy.io

    scipy.io.savemat(str(tmp_path / "train_32x32.mat"),
                     {"X": np.zeros((28, 28, 1, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DatasetFormatError, match=r"expected \[32, 32, 3, N\]"):
        load_image_dataset("svhn", tmp_path)


# ---------------------------------------------------------------------------------------------
# digits, subsets, normalization, names, download

def test_digits_builtin():
    train, test = load_image_splits("digits")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert 0.0 <= train.images.min() and train.images.max() == 1.0
    assert set(train.labels.tolist()) == set(range(10)) and train.labels.dtype == torch.int64
    # the split is fixed: disjoint and stable across calls
    assert torch.equal(load_image_dataset("digits", None, train=False).images, test.images)
    flat = lambda ds: {tuple(v) for v in ds.images.flatten(1).tolist()}  # noqa: E731
    assert len(flat(train) & flat(test)) < 5  # a few duplicate images exist in the raw data


def test_subset_first_and_seeded(tmp_path):
    ref = write_mnist(tmp_path, n_train=20)
    first = load_image_dataset("mnist", tmp_path, subset=5)
    assert first.labels.tolist() == ref["train"][1][:5].tolist()
    a = load_image_dataset("mnist", tmp_path, subset=5, subset_seed=1)
    b = load_image_dataset("mnist", tmp_path, subset=5, subset_seed=1)
    c = load_image_dataset("mnist", tmp_path, subset=5, subset_seed=2)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    idx = select_subset(20, 5, 1)
    assert a.labels.tolist() == ref["train"][1][idx].tolist()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="subset must be a positive int"):
            load_image_dataset("mnist", tmp_path, subset=bad)
    with pytest.raises(ValueError, match="larger than the dataset"):
        load_image_dataset("mnist", tmp_path, subset=21)


def test_normalize():
    raw = load_image_dataset("digits")
    norm = load_image_dataset("digits", normalize=True)
    torch.testing.assert_close(norm.images, (raw.images - 0.3053) / 0.3760)
    custom = load_image_dataset("digits", normalize=((0.5,), (0.5,)))
    torch.testing.assert_close(custom.images, raw.images * 2 - 1)
    assert norm.normalized and not raw.normalized
    for bad in (((0.5,), (0.0,)), ((0.1, 0.2), (1.0,)), 3, "yes"):
        with pytest.raises(ValueError, match="std > 0"):
            load_image_dataset("digits", normalize=bad)


def test_specs_and_names():
    assert set(IMAGE_DATASETS) == {"mnist", "fashion_mnist", "cifar10", "svhn", "digits"}
    assert image_spec("mnist") == (1, 28, 28, 10) and image_spec("mnist").img_size == (1, 28, 28)
    c, h, w, k = image_spec("SVHN")
    assert (c, h, w, k) == (3, 32, 32, 10) and image_spec("digits") == (1, 8, 8, 10)
    with pytest.raises(ValueError, match="unknown image dataset 'imagenet'"):
        image_spec("imagenet")
    with pytest.raises(ValueError, match="needs root"):
        load_image_dataset("mnist", None)


def test_download_needs_torchvision(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(DownloadUnavailableError, match="needs torchvision"):
        load_image_dataset("cifar10", tmp_path, download=True)
    # nothing is fetched by default, and present files need no download
    with pytest.raises(DatasetNotFoundError):
        load_image_dataset("cifar10", tmp_path)
    write_mnist(tmp_path, n_train=3)
    assert len(load_image_dataset("mnist", tmp_path, download=True)) == 3


# ---------------------------------------------------------------------------------------------
# real MNIST

@pytest.mark.skipif(shared_mnist_dir() is None,
                    reason="real MNIST not found ($ANODE_MNIST_DIR or ../shared/data/mnist)")
def test_real_mnist():
    root = shared_mnist_dir()
    train, test = load_image_splits("mnist", root)
    assert len(train) == 60000 and len(test) == 10000
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert train.labels.min() == 0 and train.labels.max() == 9
    assert torch.bincount(train.labels).tolist()[:2] == [5923, 6742]  # the published class counts
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(train.images.mean().item() - 0.1307) < 1e-3


# ---------------------------------------------------------------------------------------------
# packaged image configs

CONFIG_DIR = REPO_ROOT / "anode_native" / "configs"
PAPER_MODELS = {"mnist": (92, 64, 5), "cifar10": (125, 64, 10), "svhn": (125, 64, 10)}
IMAGE_CONFIGS = sorted(f"{d}_{k}" for d in (*PAPER_MODELS, "digits", "mnist_reduced")
                       for k in ("node", "anode"))


def _read_config(name):
    import yaml

    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize("dataset", sorted(PAPER_MODELS))
def test_paper_image_configs(dataset):
    node_filters, anode_filters, channels = PAPER_MODELS[dataset]
    for kind, filters, augment in (("node", node_filters, 0), ("anode", anode_filters, channels)):
        cfg = _read_config(f"{dataset}_{kind}")
        (model,) = cfg["models"].values()
        assert (model["name"], model["num_filters"], model["augment_dim"]) == ("convodenet", filters, augment)
        assert model["tol"] == 1e-3 and model["adjoint"] is True and model["method"] == "dopri5"
        assert model["max_num_steps"] == 1000 and model["non_linearity"] == "relu"
        assert cfg["dataset"]["name"] == dataset and cfg["val_dataset"] == {"train": False}
        assert cfg["training"] == {"epochs": 20, "batch_size": 256, "lr": 1e-3, "loss": "cross_entropy"}
        assert cfg["repeats"] == 5


@pytest.fixture
def image_registry(monkeypatch):
    """The config registry with the image datasets in it (registered here if the package has not
    registered them yet; removed again afterwards)."""
    try:
        from anode_native.training import registry
    except ImportError as err:  # the native extension is not built
        pytest.skip(f"anode_native.training not importable: {err}")
    from anode_native.data.images import image_dataset_factory

    for name in IMAGE_DATASETS:
        if name not in registry.DATASETS:
            monkeypatch.setitem(registry.DATASETS, name, None)  # undo removes the entry
            registry.register_dataset(name, image_dataset_factory(name), task="classification",
                                      num_classes=image_spec(name).num_classes)
    return registry


@pytest.mark.parametrize("name", IMAGE_CONFIGS)
def test_image_configs_validate(image_registry, name):
    from anode_native.training.config import load_config

    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg["training"]["loss"] == "cross_entropy"
    assert set(cfg["dataset"]) <= {"name", "root", "subset", "subset_seed", "normalize", "download"}
    assert not cfg["dataset"].get("download", False)  # nothing downloads by default


def test_quick_configs_build_datasets(image_registry):
    from anode_native.training.config import load_config
    from anode_native.training.runner import build_datasets, input_shape_of, output_dim_of

    cfg = load_config(CONFIG_DIR / "digits_anode.yaml")
    train, val = build_datasets(cfg)
    assert (len(train), len(val)) == (1437, 360)
    assert input_shape_of(train) == (1, 8, 8) and output_dim_of(cfg) == 10
    root = shared_mnist_dir()
    if root is None:
        pytest.skip("real MNIST not found ($ANODE_MNIST_DIR or ../shared/data/mnist)")
    cfg = load_config(CONFIG_DIR / "mnist_reduced_node.yaml", {"dataset": {"root": str(root)}})
    train, val = build_datasets(cfg)
    assert (len(train), len(val)) == (10240, 2000) and not val.train
    assert input_shape_of(train) == (1, 28, 28)
    assert len(set(torch.bincount(train.labels).tolist())) > 1 and train.labels.bincount().min() > 800
