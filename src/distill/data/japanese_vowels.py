"""Japanese Vowels (UEA archive; Kudo, Toyama & Shimbo 1999): nine speakers told apart by 12 LPC channels.

Nine male speakers each uttered the vowels /ae/ in succession; every utterance is a
series of 12 LPC cepstrum coefficients, and the task is who spoke. aeon ships the
archive's equal-length version (25 frames): 270 train / 370 test utterances, 30 train
per speaker. Read offline from the ``aeon`` package
(:mod:`distill.data.uea`); a channel subset gives a cross-sensor setting (a student
that hears fewer coefficients).
"""

from __future__ import annotations

from distill.data.base import DATASETS, DataSplits
from distill.data.uea import Problem, load_problem

CHANNEL_NAMES = tuple(f"lpc{i}" for i in range(1, 13))
CLASS_NAMES = tuple(str(i) for i in range(1, 10))
PROBLEM = Problem("japanese_vowels", "JapaneseVowels", "JapaneseVowels_eq", CHANNEL_NAMES, CLASS_NAMES, length=25)


@DATASETS.register("japanese_vowels")
def load_japanese_vowels(channels: list[int] | None = None, align: bool = False) -> DataSplits:
    """Japanese Vowels, 270 train / 370 test utterances of shape (C, 25), 9 speakers (label i is speaker i + 1),
    per-channel standardised on train; ``channels`` and ``align`` as for ``basicmotions``."""
    return load_problem(PROBLEM, channels, align)
