"""BasicMotions (UEA archive, Bagnall et al. 2018): four activities seen by a smartwatch's 6 motion channels.

Clements' student project: four people wore a smartwatch while standing, walking,
running and playing badminton, five recordings each; a trial is 10 s sampled at
10 Hz (length 100) of a 3-axis accelerometer (channels 0–2) and a 3-axis gyroscope
(channels 3–5), 40 train / 40 test trials, 10 per class in each. The archive's
files are read offline from the ``aeon`` package, found without importing it, so
aeon's own dependencies (numba, pandas) are not needed.

A channel subset is the cross-sensor setting: a teacher sees all six channels, a
student only some (``channels=[0, 1, 2]``: the accelerometer).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import torch

from distill.data.alignment import euclidean_alignment
from distill.data.base import DATASETS, DataSplits
from distill.data.custom import from_arrays
from distill.errors import DistillError

CHANNEL_NAMES = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
#: Label ``i`` is ``CLASS_NAMES[i]``: the archive's class names, lower-cased and sorted.
CLASS_NAMES = ("badminton", "running", "standing", "walking")
LENGTH = 100
INSTALL_HINT = "pip install --no-deps aeon==1.6.0"


@DATASETS.register("basicmotions")
def load_basicmotions(channels: list[int] | None = None, align: bool = False) -> DataSplits:
    """BasicMotions, 40 train / 40 test trials of shape (C, 100), 4 activities, per-channel standardised.

    ``channels`` picks a subset of the six channels by index (``CHANNEL_NAMES`` gives
    their names; the default keeps all six). Each channel is standardised with the
    mean and std of its training values. ``align=True`` then applies
    :func:`euclidean_alignment` (He & Wu, IEEE TBME 2020) to train and test separately,
    each set being its own domain. Labels: badminton 0, running 1, standing 2,
    walking 3 (``CLASS_NAMES``). ``extra`` holds ``channel_names`` and ``class_names``.
    """
    selected = _check_channels(channels)
    if not isinstance(align, bool):
        raise DistillError(f"align must be True or False, got {align!r}.")
    x_train, y_train = _read_ts(_data_file("TRAIN"))
    x_test, y_test = _read_ts(_data_file("TEST"))
    x_train, x_test = x_train[:, selected], x_test[:, selected]
    mean = x_train.mean(axis=(0, 2), keepdims=True)
    std = x_train.std(axis=(0, 2), keepdims=True)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if align:
        x_train = euclidean_alignment(torch.from_numpy(x_train)).numpy()
        x_test = euclidean_alignment(torch.from_numpy(x_test)).numpy()
    splits = from_arrays(x_train, y_train, x_test, y_test, num_classes=len(CLASS_NAMES))
    extra = {"channel_names": [CHANNEL_NAMES[c] for c in selected], "class_names": list(CLASS_NAMES)}
    return dataclasses.replace(splits, name="basicmotions", extra=extra)


def _check_channels(channels: list[int] | None) -> list[int]:
    """``channels`` as a list of distinct valid indices, all six when None."""
    valid = f"0..{len(CHANNEL_NAMES) - 1} ({', '.join(CHANNEL_NAMES)})"
    if channels is None:
        return list(range(len(CHANNEL_NAMES)))
    if (
        not isinstance(channels, list | tuple)
        or not channels
        or any(isinstance(c, bool) or not isinstance(c, int) for c in channels)
    ):
        raise DistillError(
            f"channels must be a non-empty list of channel indices in {valid}, got {channels!r}."
        )
    bad = [c for c in channels if not 0 <= c < len(CHANNEL_NAMES)]
    if bad:
        raise DistillError(f"channels {bad} out of range; valid channel indices are {valid}.")
    if len(set(channels)) != len(channels):
        raise DistillError(f"channels {list(channels)} repeat an index; list each channel once.")
    return list(channels)


def _read_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Trials (N, 6, 100) float64 and labels (N,) int64 from an archive ``.ts`` file.

    After the ``@data`` line each trial is one line: every channel's comma-separated
    values, channels separated by ``:``, then the class name.
    """
    lines = path.read_text().splitlines()
    start = [line.strip().lower() for line in lines].index("@data") + 1
    trials, names = [], []
    for line in filter(None, (line.strip() for line in lines[start:])):
        *series, name = line.split(":")
        trials.append([[float(v) for v in values.split(",")] for values in series])
        names.append(name.lower())
    x = np.array(trials)
    if x.shape[1:] != (len(CHANNEL_NAMES), LENGTH) or not set(names) <= set(CLASS_NAMES):
        raise DistillError(
            f"{path} is not the BasicMotions file that aeon ships (trials of shape {x.shape[1:]}, "
            f"classes {sorted(set(names))}); reinstall it: {INSTALL_HINT}"
        )
    return x, np.array([CLASS_NAMES.index(name) for name in names])


def _data_file(split: str) -> Path:
    """``aeon/datasets/data/BasicMotions/BasicMotions_{split}.ts``, found without importing aeon."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise DistillError(f"the BasicMotions loader needs the aeon package's data files: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / "data" / "BasicMotions" / f"BasicMotions_{split}.ts"
        if path.is_file():
            return path
    raise DistillError(
        f"the installed aeon package ({', '.join(spec.submodule_search_locations)}) has no "
        f"datasets/data/BasicMotions/BasicMotions_{split}.ts; reinstall it: {INSTALL_HINT}"
    )
