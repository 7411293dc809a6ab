"""Where teacher outputs come from, behind one interface (:class:`TeacherSignal`) any family uses: the live
teacher (:mod:`~distill.signals.live`), a dense cache of tapped outputs (:mod:`~distill.signals.dense`), and a
top-k + tail cache for large vocabularies (:mod:`~distill.signals.topk`). Each cache refuses inputs, tokenizers
or data it was not built for."""

from distill.signals.base import TeacherSignal
from distill.signals.dense import CachedTeacher, build_teacher_cache, input_fingerprints
from distill.signals.live import LiveSignal
from distill.signals.topk import TopKCache, blocks_hash, build_topk_cache, tail_mass, topk_reconstruction_kl

__all__ = [
    "CachedTeacher",
    "LiveSignal",
    "TeacherSignal",
    "TopKCache",
    "blocks_hash",
    "build_teacher_cache",
    "build_topk_cache",
    "input_fingerprints",
    "tail_mass",
    "topk_reconstruction_kl",
]
