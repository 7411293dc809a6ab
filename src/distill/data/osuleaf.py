"""OSU Leaf (UCR archive; Gandhi 2002): six tree species told apart by the outline of a leaf.

Each leaf image's contour is unrolled into one series of 427 distances from its centre;
200 train / 242 test leaves of six genera. A univariate problem where a small network
trained alone is far from the best published (~98 % for FCN / ResNet, Fawaz et al. 2019),
so there is room for a teacher to help. Read offline from the ``aeon`` package
(:mod:`distill.data.uea`), with one channel.
"""

from __future__ import annotations

from distill.data.base import DATASETS, DataSplits
from distill.data.uea import Problem, load_problem

CLASS_NAMES = tuple(str(i) for i in range(1, 7))
PROBLEM = Problem("osuleaf", "OSULeaf", "OSULeaf", ("outline",), CLASS_NAMES, length=427)


@DATASETS.register("osuleaf")
def load_osuleaf() -> DataSplits:
    """OSU Leaf, 200 train / 242 test outlines of shape (1, 427), 6 species (label i is class i + 1), standardised
    on train."""
    return load_problem(PROBLEM, None, align=False)
