"""A tiny real teacher for the language tests: a BPE tokenizer trained on generated text and a small
random Llama saved as a Hugging Face folder (built in seconds, offline)."""

from __future__ import annotations

from pathlib import Path

import torch

from distill.tasks.language.corpus import generated_text


def make_tokenizer(folder: Path, vocab_size: int = 120, seed: int = 0):
    """A byte-level BPE tokenizer trained on the generated corpus, saved in ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(generated_text(seed=seed).texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_teacher(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Llama teacher (width 32) with its tokenizer in ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer(folder, seed=seed)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=128,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder
