"""Multichannel time-series problems of the UEA/UCR archive (Bagnall et al. 2018), read offline.

The ``aeon`` package ships a few problems as ``.ts`` files; they are found without
importing aeon, so its own dependencies (numba, pandas) are not needed. Each loader
standardises every channel with its training mean and std, optionally keeps a channel
subset (the cross-sensor setting: a teacher sees all channels, a student some) and
optionally Euclidean-aligns each split on its own (He & Wu, IEEE TBME 2020).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import torch

from distill.data.alignment import euclidean_alignment
from distill.data.base import DataSplits
from distill.data.custom import from_arrays
from distill.errors import DistillError

INSTALL_HINT = "pip install --no-deps aeon==1.6.0"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One archive problem: its folder, the stem of its files, channel and class names, series length."""

    name: str
    folder: str
    stem: str
    channel_names: tuple[str, ...]
    class_names: tuple[str, ...]
    length: int


def load_problem(problem: Problem, channels: list[int] | None, align: bool) -> DataSplits:
    """``problem``'s train and test splits of shape (C, length), per-channel standardised on train."""
    selected = check_channels(problem, channels)
    if not isinstance(align, bool):
        raise DistillError(f"align must be True or False, got {align!r}.")
    x_train, y_train = read_ts(problem, data_file(problem, "TRAIN"))
    x_test, y_test = read_ts(problem, data_file(problem, "TEST"))
    x_train, x_test = x_train[:, selected], x_test[:, selected]
    mean = x_train.mean(axis=(0, 2), keepdims=True)
    std = x_train.std(axis=(0, 2), keepdims=True)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if align:
        x_train = euclidean_alignment(torch.from_numpy(x_train)).numpy()
        x_test = euclidean_alignment(torch.from_numpy(x_test)).numpy()
    splits = from_arrays(x_train, y_train, x_test, y_test, num_classes=len(problem.class_names))
    extra = {"channel_names": [problem.channel_names[c] for c in selected], "class_names": list(problem.class_names)}
    return dataclasses.replace(splits, name=problem.name, extra=extra)


def check_channels(problem: Problem, channels: list[int] | None) -> list[int]:
    """``channels`` as a list of distinct valid indices, all of them when None."""
    names = problem.channel_names
    valid = f"0..{len(names) - 1} ({', '.join(names)})"
    if channels is None:
        return list(range(len(names)))
    if (
        not isinstance(channels, list | tuple)
        or not channels
        or any(isinstance(c, bool) or not isinstance(c, int) for c in channels)
    ):
        raise DistillError(f"channels must be a non-empty list of channel indices in {valid}, got {channels!r}.")
    bad = [c for c in channels if not 0 <= c < len(names)]
    if bad:
        raise DistillError(f"channels {bad} out of range; valid channel indices are {valid}.")
    if len(set(channels)) != len(channels):
        raise DistillError(f"channels {list(channels)} repeat an index; list each channel once.")
    return list(channels)


def read_ts(problem: Problem, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Trials (N, C, length) float64 and labels (N,) int64 from an archive ``.ts`` file.

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
    if x.shape[1:] != (len(problem.channel_names), problem.length) or not set(names) <= set(problem.class_names):
        raise DistillError(
            f"{path} is not the {problem.name} file that aeon ships (trials of shape {x.shape[1:]}, "
            f"classes {sorted(set(names))}); reinstall it: {INSTALL_HINT}"
        )
    return x, np.array([problem.class_names.index(name) for name in names])


def data_file(problem: Problem, split: str) -> Path:
    """``aeon/datasets/data/<folder>/<stem>_{split}.ts``, found without importing aeon."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise DistillError(f"the {problem.name} loader needs the aeon package's data files: {INSTALL_HINT}")
    relative = Path("datasets") / "data" / problem.folder / f"{problem.stem}_{split}.ts"
    for folder in spec.submodule_search_locations:
        if (Path(folder) / relative).is_file():
            return Path(folder) / relative
    raise DistillError(
        f"the installed aeon package ({', '.join(spec.submodule_search_locations)}) has no "
        f"{relative.as_posix()}; reinstall it: {INSTALL_HINT}"
    )
