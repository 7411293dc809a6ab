"""A student's own tokenizer: a byte-level BPE trained on the training text with the ``tokenizers`` library
(as GPT-2's, so any text can be encoded), made once per text and size in the content-hash cache, or a
tokenizer file of the user's. A small vocabulary makes a small student's embedding small: 8,000 rows of
64 instead of the teacher's 49,152."""

from __future__ import annotations

from pathlib import Path

from distill.engine.cache import cached_entry, entry_folder
from distill.errors import ConfigError
from distill.tasks.language.corpus import Corpus
from distill.tasks.language.models import load_tokenizer

#: the end-of-text token of a trained tokenizer (it joins documents, as the teacher's does)
END_OF_TEXT = "<|endoftext|>"
#: the smallest trained vocabulary: the 256 byte tokens every text needs, the end-of-text token and one merge
SMALLEST_VOCABULARY = 258


def train_tokenizer(corpus: Corpus, vocab_size: int):
    """A byte-level BPE of ``vocab_size`` tokens (256 bytes, end-of-text and the most frequent merges) trained on
    ``corpus``; a cache entry per text and size, loaded as a fast Hugging Face tokenizer."""
    import tokenizers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < SMALLEST_VOCABULARY:
        raise ConfigError(f"student.tokenizer.train.vocab_size must be at least {SMALLEST_VOCABULARY} (256 bytes, "
                          f"end-of-text and one merge), got {vocab_size}.")

    def train(staging: Path) -> dict:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        backend.train_from_iterator(corpus.texts, trainer)
        PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT).save_pretrained(staging)
        return {"vocab_size": backend.get_vocab_size()}

    identity = {"kind": "bpe", "text": corpus.digest(), "vocab_size": vocab_size, "tokenizers": tokenizers.__version__}
    folder = entry_folder("language", identity)
    cached_entry(folder, identity, train)
    return load_tokenizer(folder)


def load_tokenizer_file(path: str, eos: str | None = None):
    """A user's tokenizer: a folder written by ``save_pretrained`` or a ``tokenizer.json`` file; ``eos`` names the
    end-of-text token where the file does not (a bare ``tokenizer.json``). Refused with one message when it is
    missing, unreadable or has no end-of-text token in its vocabulary."""
    from transformers import PreTrainedTokenizerFast

    where = Path(path).expanduser()
    if where.is_dir():
        try:
            tokenizer = load_tokenizer(where)
        except (OSError, ValueError) as err:
            raise ConfigError(f"student.tokenizer.file: {where} holds no tokenizer save_pretrained wrote "
                              f"({str(err).splitlines()[0] if str(err) else type(err).__name__}).") from None
    elif where.is_file():
        try:
            tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(where))
        except Exception as err:  # the tokenizers library raises its own exception types for a malformed file
            raise ConfigError(f"student.tokenizer.file: {where} is not a tokenizer.json the tokenizers library "
                              f"reads ({str(err).splitlines()[0] if str(err) else type(err).__name__}).") from None
    else:
        raise ConfigError(f"student.tokenizer.file: {where} does not exist; give a tokenizer.json file or a folder "
                          "written by save_pretrained.")
    if eos is not None:
        if eos not in tokenizer.get_vocab():
            raise ConfigError(f"student.tokenizer.eos {eos!r} is not a token of {where}.")
        tokenizer.eos_token = eos
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer in {where} has no end-of-text token; name it in student.tokenizer.eos.")
    return tokenizer
