"""Fixtures and helpers shared by every test module."""
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_mnist_dir():
    """Real MNIST for tests: $ANODE_MNIST_DIR, else ../shared/data/mnist beside the repo root.
    Tests only; the package never looks there."""
    candidates = [os.environ.get("ANODE_MNIST_DIR"), REPO_ROOT.parent / "shared" / "data" / "mnist"]
    for c in candidates:
        if c and (Path(c) / "train-images-idx3-ubyte.gz").is_file():
            return Path(c)
    return None


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread per test: the tests' tiny batches run fastest single-threaded, and on a busy
    2-core machine torch's default of two intra-op threads makes them tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
