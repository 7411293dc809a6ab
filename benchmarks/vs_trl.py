"""distill against Hugging Face TRL 1.16.0's GKD trainer, side by side on one language job.

The same teacher (SmolLM2-135M-Instruct, dequantised once by the language family and read by both
sides from the same ``save_pretrained`` folder), the same student and initial weights (the family's
size preset or a cut of the teacher, saved once with ``save_pretrained``), the same token blocks in the
same order (one safetensors file), the same optimizer and schedule (AdamW, no weight decay, cosine
decay without warm-up, gradient clipping at 1, float32, no gradient checkpointing) and the same loss:
GKD's generalised JSD(β) at temperature 1, over every next-token position off-policy (λ = 0), and with
an on-policy share λ whose batches the student continues from the block's first ``--prompt-tokens``
tokens (the loss then skips the prompt on every batch, as TRL's does).

Jobs: ``jsd`` (β = ``--beta``, λ = 0), ``forward_kl`` (β = 0, which TRL computes as KL(teacher ‖
student)) and ``on_policy`` (β, λ = ``--lmbda``). Sides: ``trl`` (``GKDTrainer.train()`` in TRL's own
virtual environment, ``benchmarks/trl_side.py``), ``distill`` (the family's ``LanguageObjective`` with the
live teacher under ``distill.engine``'s ``train``) and ``distill_chunked`` (the same with
``method.chunk_tokens = --chunk``). Each side is its own process; the driver lets them take one optimizer
step each in turn, rotating who goes first, so the machine's drift falls on all of them alike.

Reported: the loss of each step on each side (step 1 is the same batch and the same weights on all
sides: the goal is equality to 1e-5; on-policy steps sample different continuations on each side and
are not comparable value by value), seconds and tokens (batch × block length) per second of a step
(median over steps 2..N; from the start of the forward pass to the end of the optimizer and schedule
step), each process's peak resident memory during training (``VmHWM`` reset when training starts; the
models' safetensors are memory-mapped, so the resident memory once loaded says little) and over its life, and the trained students' held-out perplexity, top-1 agreement and
KL to the teacher, all scored here by the family's ``evaluate_model``.

TRL's environment (outside the repository; nothing of TRL is a dependency of distill)::

    python3.11 -m venv /work/trl-venv && /work/trl-venv/bin/pip install torch==2.13.0
    echo torch==2.13.0 > pins.txt
    /work/trl-venv/bin/pip install -c pins.txt trl==1.16.0 transformers==5.25.0 accelerate==1.16.0

then, with the project's interpreter::

    python benchmarks/vs_trl.py --steps 12 --trl-python /work/trl-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import print_table, write_json

from distill.engine.cache import cache_root
from distill.tasks.language.objectives import LanguageObjective, prediction_mask

SIDES = ("trl", "distill", "distill_chunked")
JOBS = ("jsd", "forward_kl", "on_policy")
TRL_SIDE = Path(__file__).resolve().parent / "trl_side.py"


# ---------------------------------------------------------------------------------------------- the workers


def resident_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in KiB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def protocol_channel():
    """The original stdout for the driver's JSON lines; whatever else prints goes to stderr."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return lambda **message: channel.write(json.dumps(message) + "\n")


class PacedObjective(LanguageObjective):
    """The family's objective, paced by the driver: waits for ``go`` before each step, checks that the engine
    drew the expected batch, and reports the step's loss and seconds after the optimizer and schedule step."""

    def __init__(self, *args, expected: torch.Tensor, say, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.expected, self.say, self.steps, self.started, self.out = expected, say, 0, 0.0, {}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not sys.stdin.readline():
            raise SystemExit("the driver closed the pipe")
        rows = len(batch["input_ids"])
        if not torch.equal(batch["input_ids"], self.expected[self.steps * rows:(self.steps + 1) * rows]):
            raise SystemExit(f"step {self.steps + 1}: the engine drew another batch than the one the TRL side gets")
        self.started = time.perf_counter()
        self.out = super().forward(batch)
        return self.out

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        seconds = time.perf_counter() - self.started
        self.steps = step
        self.say(event="step", step=step, loss=float(self.out["loss"]), seconds=seconds,
                 on_policy=bool(self.out["on_policy"]))


def distill_side(job: dict) -> None:
    """distill's side of one job (the same job file as ``trl_side.py``, plus ``chunk_tokens``)."""
    say = protocol_channel()
    torch.set_num_threads(job["threads"])
    from safetensors.torch import load_file

    from distill.data.tensors import TensorDictDataset
    from distill.engine.config import TrainConfig
    from distill.engine.sampler import EpochShuffleSampler
    from distill.engine.trainer import train
    from distill.tasks.language.methods import LANGUAGE_LOSSES
    from distill.tasks.language.models import load_causal_lm
    from distill.tasks.language.objectives import live_signal

    consumed = load_file(job["data"])["input_ids"]
    order = torch.tensor(list(EpochShuffleSampler(len(consumed), job["seed"])))
    ids = torch.empty_like(consumed)
    ids[order] = consumed  # the engine's sampler draws ids[order] = the consumed order
    tensors = {"input_ids": ids, "row": torch.arange(len(ids))}
    if job["prompt_tokens"]:
        tensors["loss_mask"] = prediction_mask(ids, job["prompt_tokens"] - 1)  # TRL's labels skip the prompt
    teacher = load_causal_lm(Path(job["teacher"]))
    student = load_causal_lm(Path(job["student"]), trainable=True)
    loss = LANGUAGE_LOSSES.build("jsd", beta=job["beta"], temperature=1.0)
    objective = PacedObjective(student, loss, live_signal(teacher), teacher, job["lmbda"], max(job["prompt_tokens"], 1),
                               job["steps"], None, job["chunk_tokens"], expected=consumed, say=say)
    config = TrainConfig(steps=job["steps"], batch_size=job["batch_size"], optimizer="adamw", lr=job["lr"],
                         weight_decay=0.0, schedule=job["schedule"], warmup_steps=0, max_grad_norm=job["max_grad_norm"],
                         seed=job["seed"], progress=False, log_every=job["steps"])
    say(event="ready", rss_kib=resident_kib("VmRSS"), torch=torch.__version__, threads=torch.get_num_threads())
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on: the training's peak
    train(objective, TensorDictDataset(**tensors), config, Path(job["out"]).parent / "engine_run")
    student.save_pretrained(job["out"], safe_serialization=True)
    say(event="done", train_peak_kib=resident_kib("VmHWM"), max_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# ---------------------------------------------------------------------------------------------- the driver


def prepare_job_files(args) -> tuple[dict, object, object, torch.Tensor]:
    """Teacher folder, initial student folder and the consumed blocks file; the held-out blocks and cache."""
    from safetensors.torch import save_file

    from distill.engine.sampler import EpochShuffleSampler
    from distill.tasks.language.models import weights_hash
    from distill.tasks.language.recipe import LanguageRecipe
    from distill.tasks.language.run import EVAL_K, make_student, prepare, teacher_cache

    student = {"prune": {"layers": args.prune}} if args.prune else {"preset": args.student}
    recipe = LanguageRecipe.model_validate({
        "name": "vs-trl", "task": "language", "student": student, "signals": {"source": "live"},
        "data": {"block_length": args.length, "train_blocks": args.steps * args.batch, "eval_blocks": args.eval_blocks},
        "method": {"loss": "jsd", "options": {"beta": args.beta}},
        "train": {"steps": args.steps, "batch_size": args.batch, "seed": args.seed}})
    context = prepare(recipe)
    eval_cache = teacher_cache(context, "eval", EVAL_K)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    initial = work / "student_init"
    model = make_student(recipe, context)
    model.save_pretrained(initial, safe_serialization=True)
    context.tokenizer.save_pretrained(initial)
    order = torch.tensor(list(EpochShuffleSampler(len(context.train_blocks), args.seed)))
    data = work / "blocks.safetensors"
    save_file({"input_ids": context.train_blocks[order].contiguous()}, str(data))
    files = {"teacher": str(context.teacher_folder), "teacher_weights": weights_hash(context.teacher_folder),
             "student": str(initial), "data": str(data)}
    return files, context, eval_cache, model


def job_settings(name: str, args) -> dict:
    """β, λ and the prompt length of a job."""
    if name == "jsd":
        return {"beta": args.beta, "lmbda": 0.0, "prompt_tokens": 0}
    if name == "forward_kl":
        return {"beta": 0.0, "lmbda": 0.0, "prompt_tokens": 0}
    return {"beta": args.beta, "lmbda": args.lmbda, "prompt_tokens": args.prompt_tokens}


class Worker:
    """One side of one job in its own process, spoken to by JSON lines."""

    def __init__(self, side: str, job: dict, work: Path, trl_python: str) -> None:
        self.side = side
        folder = work / job["name"] / side
        folder.mkdir(parents=True, exist_ok=True)
        job = {**job, "out": str(folder / "student"), "chunk_tokens": job["chunk"] if side == "distill_chunked" else 0}
        (folder / "job.json").write_text(json.dumps(job, indent=1))
        command = [trl_python, str(TRL_SIDE)] if side == "trl" else [sys.executable, __file__, "--side", "distill"]
        self.log = folder / "stderr.log"
        self.out = Path(job["out"])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                                                                          os.environ.get("PYTHONPATH")]))}
        if side == "trl":
            env.pop("PYTHONPATH")  # TRL's interpreter must not see the project's packages
        self.process = subprocess.Popen([*command, str(folder / "job.json")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=open(self.log, "w"), text=True, bufsize=1, env=env)

    def read(self, event: str) -> dict:
        line = self.process.stdout.readline()
        message = json.loads(line) if line.strip() else {}
        if message.get("event") != event:
            self.process.kill()
            raise SystemExit(f"{self.side}: expected {event!r}, got {line!r}; its log {self.log} ends:\n"
                             f"{self.log.read_text()[-3000:]}")
        return message

    def step(self) -> dict:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return self.read("step")

    def finish(self) -> dict:
        done = self.read("done")
        self.process.wait()
        return done


def run_job(name: str, args, files: dict) -> dict:
    """All sides of one job, stepped in turn; their steps, memory and trained students' folders."""
    job = {**files, **job_settings(name, args), "name": name, "steps": args.steps, "batch_size": args.batch,
           "lr": args.lr, "schedule": "cosine", "max_grad_norm": 1.0, "seed": args.seed, "threads": args.threads,
           "chunk": args.chunk}
    workers = [Worker(side, job, args.work, args.trl_python) for side in args.sides]
    ready = {w.side: w.read("ready") for w in workers}
    steps = {w.side: [] for w in workers}
    for step in range(args.steps):
        turn = workers[step % len(workers):] + workers[:step % len(workers)]
        for worker in turn:
            steps[worker.side].append(worker.step())
        print(f"{name} step {step + 1}: " + "  ".join(f"{s} {v[-1]['loss']:.7f} ({v[-1]['seconds']:.2f} s)"
                                                       for s, v in steps.items()), flush=True)
    done = {w.side: w.finish() for w in workers}
    return {"settings": {k: job[k] for k in ("beta", "lmbda", "prompt_tokens")},
            "sides": {w.side: {"ready": ready[w.side], "done": done[w.side], "steps": steps[w.side],
                               "student": str(w.out)} for w in workers}}


def summarise(result: dict, args, context, eval_cache) -> None:
    """Adds the loss gaps to TRL, step timings and held-out scores to a job's result, in place."""
    from distill.tasks.language.metrics import evaluate_model
    from distill.tasks.language.models import load_causal_lm

    sides = result["sides"]
    reference = sides.get("trl")
    tokens = args.batch * args.length
    for side in sides.values():
        losses = [s["loss"] for s in side["steps"]]
        seconds = [s["seconds"] for s in side["steps"]][1:] or [side["steps"][0]["seconds"]]
        side["seconds_per_step"] = statistics.median(seconds)
        side["tokens_per_second"] = tokens / side["seconds_per_step"]
        side["on_policy_steps"] = sum(s["on_policy"] for s in side["steps"])
        if reference is not None:
            gaps = [abs(a - b["loss"]) for a, b in zip(losses, reference["steps"])]
            side["step1_gap"], side["max_gap"] = gaps[0], max(gaps)
        side["heldout"] = evaluate_model(load_causal_lm(Path(side["student"])), context.eval_blocks, eval_cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps of every side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128, help="tokens per block")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay to 0, no warm-up)")
    parser.add_argument("--beta", type=float, default=0.5, help="JSD β: the teacher's weight in the mixture")
    parser.add_argument("--lmbda", type=float, default=0.5, help="the on_policy job's share of on-policy batches")
    parser.add_argument("--prompt-tokens", type=int, default=32, help="the on_policy job's prompt length")
    parser.add_argument("--chunk", type=int, default=256, help="distill_chunked's method.chunk_tokens")
    parser.add_argument("--student", default="tiny", help="student size preset")
    parser.add_argument("--prune", type=int, default=0, help="instead, a student cut to this many of the teacher's "
                        "layers (block influence)")
    parser.add_argument("--eval-blocks", type=int, default=32, help="held-out blocks scored after training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every side")
    parser.add_argument("--trl-python", default="/work/trl-venv/bin/python", help="the interpreter of TRL's venv")
    parser.add_argument("--work", type=Path, default=cache_root() / "vs_trl", help="job files and trained students")
    parser.add_argument("--timing-note", default="shared machine, indicative",
                        help="how far the timings can be trusted; written beside them")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vs_trl.json"))
    parser.add_argument("--side", choices=["distill"], help=argparse.SUPPRESS)
    parser.add_argument("job", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        distill_side(json.loads(args.job.read_text()))
        return
    if not Path(args.trl_python).exists():
        raise SystemExit(f"--trl-python {args.trl_python} does not exist; create TRL's venv as this script's "
                         "docstring says, or point --trl-python at it.")
    torch.set_num_threads(args.threads)
    files, context, eval_cache, initial = prepare_job_files(args)
    from distill.tasks.language.metrics import evaluate_model

    before = evaluate_model(initial, context.eval_blocks, eval_cache)
    jobs = {}
    for name in args.jobs:
        jobs[name] = run_job(name, args, files)
        summarise(jobs[name], args, context, eval_cache)
    print(f"\nlosses (float32; step 1: same weights, same batch on every side; {args.steps} steps)")
    print_table(["job", "side", "step 1 loss", "|Δ| to TRL, step 1", f"max |Δ|, steps 1–{args.steps}", "on-policy steps"],
                [[name, side, f"{v['steps'][0]['loss']:.8f}", f"{v.get('step1_gap', float('nan')):.1e}",
                  f"{v.get('max_gap', float('nan')):.1e}", str(v["on_policy_steps"])]
                 for name, job in jobs.items() for side, v in job["sides"].items()])
    print(f"\nspeed, memory and held-out scores ({args.threads} thread(s); timings: {args.timing_note}; "
          f"student before training: perplexity {before['perplexity']:.1f})")
    print_table(["job", "side", "s/step", "tokens/s", "training peak RSS MiB", "max RSS MiB",
                 "held-out ppl", "agreement", "KL"],
                [[name, side, f"{v['seconds_per_step']:.2f}", f"{v['tokens_per_second']:.0f}",
                  f"{v['done']['train_peak_kib'] / 1024:.0f}",
                  f"{v['done']['max_rss_kib'] / 1024:.0f}", f"{v['heldout']['perplexity']:.2f}",
                  f"{v['heldout']['agreement']:.4f}", f"{v['heldout']['kl']:.4f}"]
                 for name, job in jobs.items() for side, v in job["sides"].items()])
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "threads": args.threads,
                          "timing_note": args.timing_note, "files": files, "student_before": before,
                          "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                          "jobs": jobs})


if __name__ == "__main__":
    main()
