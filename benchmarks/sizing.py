"""Memory per device of a language distillation, computed from the models' configurations (README's sizing table).

Parameter counts are exact: each model is built from its published configuration on the ``meta`` device (no
weights, no download) and its parameters are counted. Per device, in bytes:

- strategy (the teacher's placement): ``replicate`` (a whole teacher per device), ``shard`` (teacher and student
  both sharded over the devices, FSDP2), ``cache`` (top-k targets computed once; the student replicated);
- teacher: parameters × 2 (bf16 inference dtype), frozen (no gradients, no optimizer state); ``shard`` divides
  it by the devices (FSDP2 ``fully_shard``), ``cache`` leaves no teacher on the training devices;
- student: parameters × 16 — fp32 weights (4; bf16 mixed precision is autocast, the weights stay fp32),
  fp32 gradients (4) and AdamW's two fp32 moments (8); sharded students divide this by the devices;
- student activations kept for backward, per layer: ``s·b·h·(34 + 5·a·s/h)`` bytes (16-bit activations, no
  recomputation; Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
  eq. 1 — an upper bound: fused attention drops the ``5·a·s/h`` term), times the layers, plus the logits'
  ``b·s·V × (2 + 4 + 4)`` bytes (bf16 logits, fp32 log-probabilities and their gradient);
- a live teacher's forward (no autograd): one layer's ``34·s·b·h`` bytes plus its ``b·s·V × (2 + 4)`` bytes of
  logits and fp32 log-probabilities; a cached teacher: the top-k targets, ``b·s·k × 8`` bytes.

``b`` is the batch per device, ``s`` the tokens per sequence, ``h`` the width, ``a`` the attention heads, ``V``
the vocabulary. Not counted: the CUDA context and allocator slack (about 1–2 GB on a GPU), FSDP's
all-gathered layer during compute, and the data.

    python benchmarks/sizing.py
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from common import print_table, write_json

GB = 1e9
#: published configurations (hidden, layers, heads, key/value heads, MLP width, vocabulary, tied embeddings)
CONFIGS = {
    "SmolLM2-135M": (576, 30, 9, 3, 1536, 49152, True),
    "Llama-3.2-1B": (2048, 16, 32, 8, 8192, 128256, True),
    "TinyLlama-1.1B": (2048, 22, 32, 4, 5632, 32000, False),
    "Llama-2-7B": (4096, 32, 32, 32, 11008, 32000, False),
    # distill's student presets (src/distill/tasks/language/models.py), on the teacher's vocabulary
    "tiny (SmolLM2 vocab)": (64, 2, 2, 1, 192, 49152, True),
    "base (SmolLM2 vocab)": (256, 6, 4, 2, 768, 49152, True),
    "base (Llama-3 vocab)": (256, 6, 4, 2, 768, 128256, True),
}


@dataclass(frozen=True)
class Setting:
    teacher: str
    student: str
    strategy: str  # replicate | shard | cache
    devices: int
    batch: int  # sequences per device
    tokens: int  # tokens per sequence
    k: int = 32  # top-k of a cached teacher


SETTINGS = [
    Setting("SmolLM2-135M", "tiny (SmolLM2 vocab)", "replicate", 1, 8, 128),
    Setting("SmolLM2-135M", "base (SmolLM2 vocab)", "replicate", 1, 8, 2048),
    Setting("Llama-3.2-1B", "base (Llama-3 vocab)", "replicate", 1, 8, 2048),
    Setting("Llama-2-7B", "TinyLlama-1.1B", "replicate", 1, 4, 2048),
    Setting("Llama-2-7B", "TinyLlama-1.1B", "shard", 8, 4, 2048),
    Setting("Llama-2-7B", "TinyLlama-1.1B", "shard", 8, 1, 2048),
    Setting("Llama-2-7B", "TinyLlama-1.1B", "cache", 8, 4, 2048),
]


def parameters(name: str) -> int:
    """The exact parameter count of ``name``'s Llama configuration, built on the meta device."""
    from transformers import LlamaConfig, LlamaForCausalLM

    h, layers, heads, kv, mlp, vocab, tied = CONFIGS[name]
    config = LlamaConfig(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                         intermediate_size=mlp, vocab_size=vocab, tie_word_embeddings=tied)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    return sum(p.numel() for p in model.parameters())


def layer_activations(name: str, batch: int, tokens: int, attention: bool = True) -> float:
    """Korthikanti et al. (2022) eq. 1: bytes one layer keeps for backward, 16-bit, no recomputation."""
    h, _, heads, *_ = CONFIGS[name]
    return tokens * batch * h * (34 + (5 * heads * tokens / h if attention else 0))


def memory(setting: Setting) -> dict:
    """Bytes per device of each part of ``setting`` (see the module's docstring), in GB."""
    t, s = setting.teacher, setting.student
    vocab = CONFIGS[s][5]
    b, n, devices = setting.batch, setting.tokens, setting.devices
    pt, ps = parameters(t), parameters(s)
    share = devices if setting.strategy == "shard" else 1
    teacher_weights = 0.0 if setting.strategy == "cache" else 2 * pt / share
    student_states = 16 * ps / share
    student_acts = CONFIGS[s][1] * layer_activations(s, b, n) + b * n * vocab * (2 + 4 + 4)
    teacher_acts = b * n * setting.k * 8 if setting.strategy == "cache" else (
        layer_activations(t, b, n, attention=False) + b * n * CONFIGS[t][5] * (2 + 4))
    parts = {"teacher_weights": teacher_weights, "student_states": student_states,
             "student_activations": student_acts, "teacher_forward": teacher_acts}
    return {"teacher_parameters": pt, "student_parameters": ps, **{k: v / GB for k, v in parts.items()},
            "total_gb": sum(parts.values()) / GB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sizing.json"))
    args = parser.parse_args()
    rows, table = [], []
    for setting in SETTINGS:
        m = memory(setting)
        table.append({**setting.__dict__, **m})
        rows.append([f"{setting.teacher} ({m['teacher_parameters'] / 1e6:,.0f} M)",
                     f"{setting.student} ({m['student_parameters'] / 1e6:,.1f} M)", setting.strategy,
                     str(setting.devices), f"{setting.batch} × {setting.tokens}", f"{m['teacher_weights']:.2f}",
                     f"{m['student_states']:.2f}", f"{m['student_activations']:.2f}", f"{m['teacher_forward']:.2f}",
                     f"{m['total_gb']:.1f}"])
    header = ["teacher (bf16)", "student", "strategy", "devices", "batch × tokens / device", "teacher GB",
              "student + AdamW GB", "student activations GB", "teacher forward GB", "total GB / device"]
    print_table(header, rows)
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    write_json(args.out, {"command": "python benchmarks/sizing.py", "rows": table})


if __name__ == "__main__":
    main()
