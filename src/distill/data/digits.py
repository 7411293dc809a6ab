"""scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), shipped with sklearn."""

from __future__ import annotations

import dataclasses

from distill.data.base import DATASETS, DataSplits
from distill.data.custom import from_arrays
from distill.errors import DistillError


@DATASETS.register("digits")
def load_digits(test_fraction: float = 0.25, seed: int = 0) -> DataSplits:
    """8×8 digits from sklearn (UCI optical digits), shape (1, 8, 8) in [0, 1], stratified split.

    The split is ``sklearn.model_selection.train_test_split`` stratified by class
    with ``random_state=seed``: 1,347 train / 450 test at the defaults.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DistillError(
            f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}."
        )
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = (bunch.data / 16.0).astype("float32").reshape(-1, 1, 8, 8)  # pixel values are 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        x, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    splits = from_arrays(x_train, y_train, x_test, y_test, num_classes=10)
    return dataclasses.replace(splits, name="digits")
