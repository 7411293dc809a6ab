"""BasicMotions (UEA archive, Bagnall et al. 2018): four activities seen by a smartwatch's 6 motion channels.

Clements' student project: four people wore a smartwatch while standing, walking,
running and playing badminton, five recordings each; a trial is 10 s sampled at
10 Hz (length 100) of a 3-axis accelerometer (channels 0–2) and a 3-axis gyroscope
(channels 3–5), 40 train / 40 test trials, 10 per class in each, read offline from
the ``aeon`` package (:mod:`distill.data.uea`).

A channel subset is the cross-sensor setting: a teacher sees all six channels, a
student only some (``channels=[0, 1, 2]``: the accelerometer).
"""

from __future__ import annotations

from distill.data.base import DATASETS, DataSplits
from distill.data.uea import INSTALL_HINT, Problem, load_problem

CHANNEL_NAMES = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
#: Label ``i`` is ``CLASS_NAMES[i]``: the archive's class names, lower-cased and sorted.
CLASS_NAMES = ("badminton", "running", "standing", "walking")
PROBLEM = Problem("basicmotions", "BasicMotions", "BasicMotions", CHANNEL_NAMES, CLASS_NAMES, length=100)

__all__ = ["CHANNEL_NAMES", "CLASS_NAMES", "INSTALL_HINT", "load_basicmotions"]


@DATASETS.register("basicmotions")
def load_basicmotions(channels: list[int] | None = None, align: bool = False) -> DataSplits:
    """BasicMotions, 40 train / 40 test trials of shape (C, 100), 4 activities, per-channel standardised.

    ``channels`` picks a subset of the six channels by index (``CHANNEL_NAMES`` gives
    their names; the default keeps all six). ``align=True`` Euclidean-aligns train and
    test separately, each set being its own domain. Labels: badminton 0, running 1,
    standing 2, walking 3 (``CLASS_NAMES``). ``extra`` holds ``channel_names`` and ``class_names``.
    """
    return load_problem(PROBLEM, channels, align)
