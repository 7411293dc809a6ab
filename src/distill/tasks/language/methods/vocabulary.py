"""MinED, FuseLLM's map between two vocabularies: every teacher token to the student token of minimum edit
distance (Wan et al., ICLR 2024, "Knowledge Fusion of Large Language Models").

Tokens are compared as the text they stand for (a token decoded alone; a byte-level token that is only
part of a UTF-8 character keeps its raw form, which two byte-level tokenizers spell alike). A teacher
token spelled exactly as a student token maps to it; the others are searched with Myers' bit-parallel
edit distance (Myers 1999, "A fast bit-vector algorithm for approximate string matching", in Hyyrö's
form for the distance of two whole strings), vectorised over every pair of a chunk of teacher tokens and
all student tokens. Ties go to the lowest student id. A token longer than 62 characters is compared by
its first 62 (the width of the bit vectors); such tokens are rare runs of spaces or symbols.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill.engine.cache import cached_tensors
from distill.engine.progress import progress_bar

#: characters of a token the bit vectors hold (int64, one bit spare for the carry of the addition)
_WIDTH = 62


def token_strings(tokenizer, size: int) -> list[str]:
    """The text of each of the first ``size`` token ids, as the module docstring says."""
    ids = list(range(size))
    decoded = tokenizer.backend_tokenizer.decode_batch([[i] for i in ids], skip_special_tokens=False)
    raw = tokenizer.convert_ids_to_tokens(ids)
    return [text if "\ufffd" not in text and text else (token or "") for text, token in zip(decoded, raw)]


def _codes(strings: list[str], alphabet: dict[str, int]) -> tuple[Tensor, Tensor]:
    """``(codes (n, longest), lengths (n,))``: each string's characters as alphabet indices (0: not in it)."""
    longest = max([len(s) for s in strings] + [1])
    codes = torch.zeros(len(strings), longest, dtype=torch.long)
    for row, text in enumerate(strings):
        codes[row, : len(text)] = torch.tensor([alphabet.get(c, 0) for c in text], dtype=torch.long)
    return codes, torch.tensor([len(s) for s in strings])


def _bits_type(longest: int) -> torch.dtype:
    """The narrowest signed integer whose bits hold a query of ``longest`` characters and the addition's carry."""
    return next(t for t, bits in ((torch.int16, 14), (torch.int32, 30), (torch.int64, _WIDTH)) if longest <= bits)


def edit_distances(queries: list[str], candidates: list[str]) -> Tensor:
    """``(len(queries), len(candidates))`` Levenshtein distances (insertions, deletions, substitutions, each 1)."""
    alphabet = {c: i + 1 for i, c in enumerate(sorted({c for s in candidates for c in s}))}
    texts, text_lengths = _codes(candidates, alphabet)
    order = text_lengths.argsort(descending=True, stable=True)  # step j updates only the candidates longer than j
    texts, text_lengths = texts[order], text_lengths[order]
    queries = [q[:_WIDTH] for q in queries]
    lengths = torch.tensor([len(q) for q in queries])
    dtype = _bits_type(max(map(len, queries), default=0))
    equal = torch.zeros(len(alphabet) + 1, len(queries), dtype=torch.long)  # Peq: bit i where query[i] is that char
    for column, query in enumerate(queries):
        for i, c in enumerate(query):
            if c in alphabet:
                equal[alphabet[c], column] |= 1 << i
    equal = equal.to(dtype)
    ones = ((1 << lengths) - 1).to(dtype)  # the query's m bits
    high = (1 << (lengths - 1).clamp(min=0)).to(dtype)
    # candidates are rows (longest first), queries columns: the rows still active at step j are a prefix
    plus = ones.expand(len(candidates), -1).clone()  # Pv: vertical deltas +1 in the column of D
    minus = torch.zeros_like(plus)  # Mv: vertical deltas -1
    score = lengths.to(dtype).expand(len(candidates), -1).clone()  # D[m][0] = m
    for j in range(texts.shape[1]):
        n = int((text_lengths > j).sum())
        pv, mv = plus[:n], minus[:n]
        eq = equal.index_select(0, texts[:n, j])
        xv = eq | mv
        xh = eq & pv
        xh += pv
        xh ^= pv
        xh |= eq
        ph = xh | pv
        ph.bitwise_not_().bitwise_or_(mv).bitwise_and_(ones)
        mh = xh.bitwise_and_(pv)
        score[:n] += (ph & high).ne_(0)
        score[:n] -= (mh & high).ne_(0)
        ph.bitwise_left_shift_(1).bitwise_or_(1)
        mh.bitwise_left_shift_(1)
        torch.bitwise_and(ph, xv, out=mv).bitwise_and_(ones)
        xv.bitwise_or_(ph).bitwise_not_().bitwise_or_(mh).bitwise_and_(ones)
        pv.copy_(xv)
    empty = lengths == 0  # an empty query is as far from each candidate as it is long
    score[:, empty] = text_lengths.to(dtype).unsqueeze(1).expand(-1, int(empty.sum()))
    return score[order.argsort()].T.long()


def nearest_by_edit_distance(queries: list[str], candidates: list[str], chunk: int = 2048,
                             progress: bool = False) -> Tensor:
    """For each query, the index of the candidate at minimum edit distance (the lowest index on ties)."""
    exact: dict[str, int] = {}
    for index, text in enumerate(candidates):
        exact.setdefault(text, index)
    nearest = torch.tensor([exact.get(q, -1) for q in queries])
    # searched shortest first, so that a chunk's bit vectors are as narrow as its longest query allows
    searched = sorted((nearest < 0).nonzero().flatten().tolist(), key=lambda r: len(queries[r]))
    with progress_bar("MinED vocabulary map", len(searched), enabled=progress) as bar:
        for start in range(0, len(searched), chunk):
            rows = searched[start:start + chunk]
            nearest[rows] = edit_distances([queries[r] for r in rows], candidates).argmin(dim=1)
            bar.update(min(start + chunk, len(searched)))
    return nearest


def min_edit_distance_map(teacher_tokenizer, student_tokenizer, teacher_size: int, student_size: int,
                          identity: dict[str, str]) -> Tensor:
    """``(teacher_size,)`` student ids: MinED over the first ``teacher_size`` / ``student_size`` ids of each
    tokenizer, the teacher's end-of-text token onto the student's; a cache entry per ``identity`` (the two
    tokenizers' hashes)."""

    def build() -> tuple[dict[str, Tensor], dict]:
        mapping = nearest_by_edit_distance(token_strings(teacher_tokenizer, teacher_size),
                                           token_strings(student_tokenizer, student_size), progress=True)
        if teacher_tokenizer.eos_token_id is not None and teacher_tokenizer.eos_token_id < teacher_size:
            mapping[teacher_tokenizer.eos_token_id] = student_tokenizer.eos_token_id
        return {"map": mapping}, {}

    entry = {"kind": "mined", **identity, "sizes": f"{teacher_size}->{student_size}"}
    return cached_tensors("language", entry, build)[0]["map"]
