"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): digits as 1-D signals of length 40.

Generated offline by the ``mnist1d`` package and cached as ``.npz`` under the data
root, so only the first load pays for generation (~0.7 s for the official 5,000
samples, ~7 s per 50,000 transfer samples on one CPU core).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

from distill.data.base import DATASETS, DataSplits
from distill.data.custom import from_arrays
from distill.engine.cache import cached_entry
from distill.errors import DistillError, check_int

logger = logging.getLogger(__name__)

#: The seed of ``mnist1d.data.get_dataset_args()``: it generates the official train/test set.
OFFICIAL_SEED = 42
NUM_CLASSES = 10
ARRAYS_FILE = "arrays.npz"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Cache folder: ``root``, else ``$DISTILL_DATA``, else ``~/.cache/distill/data``."""
    return Path(root or os.environ.get("DISTILL_DATA") or "~/.cache/distill/data").expanduser()


@DATASETS.register("mnist1d")
def load_mnist1d(
    root: str | os.PathLike | None = None, transfer_size: int = 0, transfer_seed: int = 0
) -> DataSplits:
    """MNIST-1D, 4,000 train / 1,000 test signals of shape (1, 40), 10 classes.

    ``transfer_size > 0`` adds that many unlabeled samples from the same generator
    run with ``transfer_seed`` (never the official seed 42), so they are new draws,
    not copies of train or test samples. Like the official set, the generator
    standardises them with their own mean and std; for 1,000 or more samples
    these agree with the official set's to about 1 %.
    """
    check_int("transfer_size", transfer_size, least=0)
    if (
        isinstance(transfer_seed, bool)
        or not isinstance(transfer_seed, int)
        or not 0 <= transfer_seed < 2**32
    ):
        raise DistillError(
            f"transfer_seed must be an integer in 0..2**32-1, got {transfer_seed!r}."
        )
    if transfer_seed == OFFICIAL_SEED:
        raise DistillError(
            f"transfer_seed={OFFICIAL_SEED} is the seed of the official train/test set, so the "
            "transfer samples would repeat training samples; pick any other seed."
        )
    folder = data_root(root) / "mnist1d"
    stem = f"mnist1d-{version('mnist1d')}"
    official = _cached(
        folder / f"{stem}-seed{OFFICIAL_SEED}",
        {"generator": stem, "samples": 5000, "seed": OFFICIAL_SEED, "train_split": 0.8},
        lambda: _generate(5000, OFFICIAL_SEED, 0.8),
    )
    transfer = None
    if transfer_size:
        # the generator makes num_samples // 10 per class, then shuffles: round up, keep the first n
        generated = math.ceil(transfer_size / NUM_CLASSES) * NUM_CLASSES
        drawn = _cached(
            folder / f"{stem}-transfer-n{generated}-seed{transfer_seed}",
            {"generator": stem, "samples": generated, "seed": transfer_seed, "train_split": 1.0},
            lambda: _generate(generated, transfer_seed, 1.0),
        )
        transfer = drawn["x"][:transfer_size].reshape(-1, 1, 40)
    splits = from_arrays(
        official["x"].reshape(-1, 1, 40),
        official["y"],
        official["x_test"].reshape(-1, 1, 40),
        official["y_test"],
        transfer=transfer,
        num_classes=NUM_CLASSES,
    )
    return dataclasses.replace(splits, name="mnist1d")


def _generate(num_samples: int, seed: int, train_split: float) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` without disturbing the global NumPy/``random`` state."""
    from mnist1d.data import get_dataset_args, make_dataset  # imports matplotlib: only when needed

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, train_split
    logger.info("generating %d MNIST-1D samples with seed %d", num_samples, seed)
    start = time.perf_counter()
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    logger.info("generated %d MNIST-1D samples in %.1f s", num_samples, time.perf_counter() - start)
    return {
        "x": data["x"].astype(np.float32),
        "y": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32),
        "y_test": data["y_test"].astype(np.int64),
    }


def _cached(folder: Path, identity: dict, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``make()``'s arrays, generated once per ``identity`` into the cache entry ``folder``."""

    def write(staging: Path) -> dict:
        np.savez(staging / ARRAYS_FILE, **make())
        return {}

    try:
        cached_entry(folder, identity, write)
    except OSError as err:
        raise DistillError(
            f"cannot write the MNIST-1D cache {folder} ({err}); pass root= or set DISTILL_DATA "
            "to a writable folder."
        ) from None
    with np.load(folder / ARRAYS_FILE) as stored:
        return {key: stored[key] for key in stored.files}
