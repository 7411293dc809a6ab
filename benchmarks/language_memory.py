"""Peak memory of one language training step per step kind, with and without the chunked LM head and loss.

Step kinds, each the training step of ``LanguageObjective`` (forward, backward, AdamW): cross-entropy
(``ce``), forward KL from the live teacher (``live_kl``) and forward KL from top-k cached targets
(``cached_topk``), each unchunked and with ``method.chunk_tokens`` = ``--chunk``. The models have the
real shapes (defaults: SmolLM2-135M-Instruct's as the teacher, the ``tiny`` student preset; flags change
them) with random weights, which do not change memory; the cached targets are random top-k
log-probabilities of the cache's shape.

How it is measured. Every configuration runs in a fresh process (``--one``), one torch thread: one
warm-up step (AdamW allocates its state), then

* **torch peak**: the most bytes held by live tensors during one step, above what was held before it,
  from the CPU allocator's allocation and free events that ``torch.profiler`` records
  (``profile_memory=True``): exact for tensors, blind to memory outside torch's allocator;
* **logits-sized tensors**: how many tensors of at least a batch's float32 logits the step allocated
  (same events), a count of the step's full passes over the batch × vocabulary;
* **RSS peak**: the process's peak resident memory during another step (``VmHWM`` of
  ``/proc/self/status``, reset through ``/proc/self/clear_refs`` before the step) above its resident
  memory before it; it also sees the allocator's and the libraries' own memory, and pages the allocator
  has not returned to the system (Linux only; "–" elsewhere).

``tracemalloc`` would see neither (torch allocates outside Python's allocator). Run it on a quiet machine;
a smoke run on small shapes:

    python benchmarks/language_memory.py --vocab 4096 --teacher-layers 2 --batch 2 --length 64 --chunk 32
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path

import torch
from common import machine, print_table, write_json

from distill.losses import LOSSES, TopKTargets
from distill.signals import TeacherSignal
from distill.tasks.language.models import build_student
from distill.tasks.language.objectives import LanguageObjective, live_signal

KINDS = ("ce", "live_kl", "cached_topk")


class RandomTopK(TeacherSignal):
    """Top-k targets of the cache's shape and dtypes (int64 ids, float32 log-probabilities), drawn once."""

    def __init__(self, batch: int, length: int, vocabulary: int, k: int) -> None:
        generator = torch.Generator().manual_seed(0)
        scores = torch.randn(batch, length, vocabulary, generator=generator).log_softmax(-1)
        logprobs, indices = scores.topk(k, dim=-1)
        self.targets = TopKTargets(indices, logprobs)

    def for_batch(self, batch) -> TopKTargets:
        return self.targets


def teacher_model(args) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.teacher_hidden, num_hidden_layers=args.teacher_layers,
                         num_attention_heads=args.teacher_heads, num_key_value_heads=args.teacher_kv_heads,
                         intermediate_size=args.teacher_intermediate, max_position_embeddings=max(args.length, 64),
                         tie_word_embeddings=True, rms_norm_eps=1e-5)
    return LlamaForCausalLM(config).eval().requires_grad_(False)


def objective_for(kind: str, chunk: int, args) -> LanguageObjective:
    teacher = teacher_model(args)  # the student preset takes its vocabulary; a cut student takes its layers
    torch.manual_seed(1)
    layers = list(range(args.student_teacher_layers)) if args.student_teacher_layers else None
    student = build_student(teacher, args.student, args.length, layers)
    if kind == "ce":
        return LanguageObjective(student, chunk_tokens=chunk)
    loss = LOSSES.build("forward_kl")
    if kind == "live_kl":
        return LanguageObjective(student, loss, live_signal(teacher), teacher, chunk_tokens=chunk)
    return LanguageObjective(student, loss, RandomTopK(args.batch, args.length, args.vocab, args.k), chunk_tokens=chunk)


def resident_kib(field: str) -> int | None:
    """A ``/proc/self/status`` memory field in KiB, or None off Linux."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    return next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))


def torch_peak_bytes(step, logits_bytes: int) -> tuple[int, int]:
    """The most bytes held by live tensors during ``step()``, above the level before it, and how many tensors of
    at least ``logits_bytes`` (a batch's logits) it allocated."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak, sum(event.nbytes() >= logits_bytes for event in events)


def rss_peak_bytes(step) -> int | None:
    """The peak resident memory during ``step()`` above the resident memory before it (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    except OSError:
        return None
    before = resident_kib("VmRSS")
    step()
    return (resident_kib("VmHWM") - before) * 1024


def measure_one(kind: str, chunk: int, args) -> dict:
    """One configuration, in this process: a warm-up step, then one step per measure."""
    torch.set_num_threads(1)
    objective = objective_for(kind, chunk, args)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-3)
    torch.manual_seed(2)
    batch = {"input_ids": torch.randint(0, args.vocab, (args.batch, args.length)), "row": torch.arange(args.batch)}

    def step() -> None:
        objective(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    gc.collect()
    rss = rss_peak_bytes(step)
    gc.collect()
    peak, large = torch_peak_bytes(step, args.batch * args.length * args.vocab * 4)
    return {"kind": kind, "chunk_tokens": chunk, "torch_peak_bytes": peak, "rss_peak_bytes": rss,
            "logits_sized_tensors": large}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--chunk", type=int, default=256, help="method.chunk_tokens of the chunked rows")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128, help="tokens per block")
    parser.add_argument("--k", type=int, default=32, help="the cache's top-k")
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--teacher-hidden", type=int, default=576)
    parser.add_argument("--teacher-layers", type=int, default=30)
    parser.add_argument("--teacher-heads", type=int, default=9)
    parser.add_argument("--teacher-kv-heads", type=int, default=3)
    parser.add_argument("--teacher-intermediate", type=int, default=1536)
    parser.add_argument("--student", default="tiny", help="student size preset")
    parser.add_argument("--student-teacher-layers", type=int, default=0,
                        help="instead, a student of the teacher's first N layers (a cut student's shape)")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "CHUNK"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/language_memory.json"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), args)))
        return
    rows = []
    for kind in args.kinds:
        for chunk in (0, args.chunk):
            done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", kind, str(chunk)], capture_output=True,
                                  text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{kind}, chunk {chunk} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    logits = args.batch * args.length * args.vocab * 4

    def mebibytes(value: int | None) -> str:
        return "–" if value is None else f"{value / 2**20:,.0f}"

    print(f"one batch's float32 logits: {mebibytes(logits)} MiB ({args.batch} × {args.length} × {args.vocab:,})")
    print_table(["step", "chunk_tokens", "torch peak MiB", "RSS peak MiB", "logits-sized tensors"],
                [[r["kind"], str(r["chunk_tokens"]), mebibytes(r["torch_peak_bytes"]), mebibytes(r["rss_peak_bytes"]),
                  str(r["logits_sized_tensors"])] for r in rows])
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "machine": machine(), "threads": 1,
                          "logits_bytes": logits, "rows": rows, "settings": vars(args) | {"out": str(args.out)}})


if __name__ == "__main__":
    main()
