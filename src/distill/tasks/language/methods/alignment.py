"""Two tokenizations of one text, aligned by character offsets: the teacher's view of each student block,
and the pairs of positions whose next-token predictions condition on the same text.

A student with its own tokenizer trains on blocks of its own tokens; the teacher reads the same
characters, tokenised its own way (:func:`teacher_views`). Student position ``j`` predicts the
token that starts where its token ``j`` ends, having read the text up to that character; so does a
teacher position whose token ends at the same character. Such a pair conditions on exactly the same
text, and its two distributions — over different vocabularies — describe the same continuation: those
are the positions a cross-tokenizer loss compares (:func:`aligned_positions`). A position whose token
ends inside a character (a byte-level token holding part of a UTF-8 character shares the whole
character's offsets with the next) has no such pair.

The choice, against the papers: ULD (Boizard et al. 2024) pairs the i-th answer token of both sides,
and TRL's GOLD trainer does so by default (truncating to the shorter side); that drifts as soon as the
two tokenizations differ in length, which on a block of running text is at once. GOLD's extended ULD
instead groups tokens between the byte offsets where both tokenizers split, and merges each group's
probabilities by the chain rule. We keep those shared boundaries and compare the two predictions made
from them, unmerged: both are normalised next-token distributions given identical text. FuseLLM
(Wan et al. 2024) aligns two token sequences by dynamic programming over their strings (edit
distance), which approximates the correspondence the tokenizers' offsets give exactly; it then
distils only at one-to-one aligned tokens (a one-hot target elsewhere), where we distil at every
shared boundary.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch
from torch import Tensor

from distill.tasks.language.corpus import Corpus, PackedText


def clean_boundaries(offsets: Tensor) -> Tensor:
    """``(L,)`` bool: the positions whose token ends at a character boundary, i.e. where the next token starts at
    or after that end; the last position (whose next token lies outside the block) is never one."""
    clean = torch.zeros(len(offsets), dtype=torch.bool)
    clean[:-1] = offsets[1:, 0] >= offsets[:-1, 1]
    return clean


def aligned_positions(student_offsets: Tensor, teacher_offsets: Tensor) -> Tensor:
    """``(Ls,)`` int64: for each student position, the teacher position whose context ends at the same character
    (both at a clean boundary, :func:`clean_boundaries`), or -1. Offsets are ``(L, 2)`` ``[start, end)`` pairs
    in one character coordinate system, and both token sequences start at the same character."""
    teacher_at = {int(end): i for i, (end, clean) in enumerate(zip(teacher_offsets[:, 1], clean_boundaries(teacher_offsets)))
                  if clean}
    ends, clean = student_offsets[:, 1].tolist(), clean_boundaries(student_offsets).tolist()
    return torch.tensor([teacher_at.get(end, -1) if ok else -1 for end, ok in zip(ends, clean)], dtype=torch.long)


@dataclass(frozen=True)
class TeacherViews:
    """The teacher's tokens of each student block's text.

    ``ids (N, Lt)``: the teacher's tokenization of the characters block ``n`` covers, documents joined
    by its end-of-text token, padded after the end with that token; ``lengths (N,)``: the real tokens;
    ``aligned (N, L)``: for each student position the teacher position that reads the same text, or -1;
    ``characters (N,)``: the characters the teacher's predictions cover (for its bits per character).
    """

    ids: Tensor
    lengths: Tensor
    aligned: Tensor
    characters: Tensor

    def mask(self) -> Tensor:
        """``(N, Lt)`` bool: the teacher positions whose next token is real text of the block."""
        positions = torch.arange(self.ids.shape[1])
        return positions < (self.lengths - 1).unsqueeze(1)


def _pieces(corpus: Corpus, starts: list[int], begin: int, end: int) -> list[tuple[int, int, bool]]:
    """``(document, start, joined)`` of the characters ``[begin, end)``: each document's part (from character
    ``start`` of the corpus), and whether the end-of-text character after that document is in the span."""
    out = []
    first = bisect.bisect_right(starts, begin) - 1
    for doc in range(first, len(starts)):
        if starts[doc] >= end:
            break
        stop = starts[doc] + len(corpus.texts[doc])
        out.append((doc, max(begin, starts[doc]), min(end, stop), begin <= stop < end))
    return out


def teacher_views(tokenizer, corpus: Corpus, packed: PackedText) -> TeacherViews:
    """The teacher's tokenization of the text of every block of ``packed`` (a student's packing of ``corpus``)."""
    starts = corpus.starts()
    eos = tokenizer.eos_token_id
    spans = [_pieces(corpus, starts, int(o[0, 0]), int(o[-1, 1])) for o in packed.offsets]
    texts = [corpus.texts[doc][a - starts[doc]:b - starts[doc]] for pieces in spans for doc, a, b, _ in pieces]
    encoding = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    encoded = zip(encoding["input_ids"], encoding["offset_mapping"])
    ids, offsets = [], []
    for pieces in spans:
        row, where = [], []
        for doc, a, b, joined in pieces:
            tokens, token_offsets = next(encoded)
            row += tokens
            where += [(a + s, a + e) for s, e in token_offsets]
            if joined:
                row.append(eos)
                where.append((b, b + 1))
        ids.append(row)
        offsets.append(torch.tensor(where, dtype=torch.long).view(-1, 2))
    width = max(map(len, ids))
    padded = torch.full((len(ids), width), eos, dtype=torch.long)
    for n, row in enumerate(ids):
        padded[n, : len(row)] = torch.tensor(row, dtype=torch.long)
    aligned = torch.stack([aligned_positions(s, t) for s, t in zip(packed.offsets, offsets)])
    characters = torch.tensor([int(o[-1, 1] - o[0, 1]) for o in offsets])
    return TeacherViews(padded, torch.tensor(list(map(len, ids))), aligned, characters)
