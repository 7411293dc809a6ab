"""The GPU check of issue 29: one small recipe per family in bf16, the engine overhead and a language step, one JSON.

On a CUDA machine, each family's bundled recipe runs through ``distill.run`` with ``train.mixed_precision=bf16``
and a budget shrunk by ``--set`` overrides (chosen to take about a minute each on one GPU; not yet timed on
one): classification (KD, MNIST-1D), steps (reflow, 8 Gaussians), score (SDS particles), language
(SmolLM2-135M-Instruct into the tiny student on Shakespeare, or ``--lm-teacher FOLDER``) and dataset (DM, MNIST,
one image per class; the dataset recipes have no mixed-precision key, so that row trains in fp32). Then
``benchmarks/engine_overhead.py --paired`` runs in a child process with CUDA hidden (the benchmark compares the
engine with hand-written loops on the CPU; on the GPU host it measures the same thing on that host's CPU), and a
language step (cross-entropy, cached-teacher KD, live-teacher KD) is timed on the device in bf16. One JSON holds
each part's metrics and seconds, the device's name and the torch version; a table is printed.

``--dry`` runs the same plan on the CPU with budgets of a few steps, so the tests prove the script end to end.

    python benchmarks/gpu_check.py                       # on a CUDA machine, under 8 minutes in all
    python benchmarks/gpu_check.py --dry --lm-teacher F  # the same plan in seconds on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from common import print_table, write_json

from distill.experiment.launch import run as run_recipe
from distill.experiment.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
PRECISION = "bf16"


@dataclass(frozen=True)
class Family:
    """One family's recipe and its overrides on a GPU (about a minute) and in the dry run (a few steps)."""

    name: str
    recipe: str
    gpu: tuple[str, ...]
    dry: tuple[str, ...]
    precision_key: bool = True  # whether the recipe has ``train.mixed_precision``


QUIET = ("train.progress=false",)
FAMILIES = [
    Family("classification", "recipes/methods/kd.yaml",
           (*QUIET, "teacher.train.progress=false", "teacher.train.steps=3000", "train.steps=3000",
            "teacher.train.eval_every=0", "train.eval_every=0"),
           (*QUIET, "teacher.train.progress=false", "teacher.train.steps=3", "train.steps=3", "teacher.train.eval_every=0",
            "train.eval_every=0", "teacher.train.batch_size=32", "train.batch_size=32")),
    Family("steps", "recipes/steps/reflow.yaml",
           (*QUIET, "teacher.train.progress=false", "teacher.train.steps=2000", "method.options.pairs=5000",
            "train.steps=1500", "evaluate.samples=2000"),
           (*QUIET, "teacher.train.progress=false", "teacher.train.steps=3", "teacher.train.batch_size=32", "teacher.steps=2",
            "train.steps=3", "train.batch_size=32", "method.options.pairs=64", "evaluate.samples=100",
            "evaluate.teacher_steps=[1]", "data.options.n_train=500", "data.options.n_test=100",
            "teacher.options.hidden=16", "teacher.options.depth=1")),
    Family("score", "recipes/score/particles_sds.yaml",
           (*QUIET, "prior.train.progress=false", "prior.train.steps=2000", "train.steps=1000"),
           (*QUIET, "prior.train.progress=false", "train.steps=3", "train.batch_size=4", "prior.train.steps=3",
            "prior.train.batch_size=4", "prior.steps=2", "data.options.n_train=500", "data.options.n_test=100",
            "object.count=32", "prior.options.hidden=16", "prior.options.depth=1")),
    Family("language", "recipes/language/smollm2_shakespeare.yaml",
           (*QUIET,),
           (*QUIET, "data.corpus=generated", "data.block_length=16", "data.train_blocks=16", "data.eval_blocks=4",
            "signals.k=8", "train.steps=3", "train.batch_size=4", "train.warmup_steps=0", "train.eval_every=0",
            "evaluate.prompts=[The king]", "evaluate.sample_tokens=4")),
    Family("dataset", "recipes/dataset/dm_mnist_ipc1.yaml",
           ("progress=false", "method.iterations=300", "evaluate.networks=2", "evaluate.epochs=300",
            "evaluate.architectures=[convnet]", "evaluate.augment=[false]", "evaluate.baseline_ipcs=[1]",
            "evaluate.full_epochs=1"),
           ("progress=false", "data.name=digits", "data.limit_train=200", "network.width=8", "network.depth=2", "method.iterations=2",
            "method.options.real_per_class=8", "evaluate.networks=1", "evaluate.epochs=2",
            "evaluate.architectures=[convnet]", "evaluate.augment=[false]", "evaluate.baseline_ipcs=[1]",
            "evaluate.full_epochs=1"),
           precision_key=False),
]


def family_overrides(family: Family, dry: bool, lm_teacher: str | None) -> list[str]:
    overrides = list(family.dry if dry else family.gpu)
    if family.precision_key:
        overrides.append(f"train.mixed_precision={PRECISION}")
    if family.name == "language" and lm_teacher:
        overrides.append(f"teacher.source={lm_teacher}")
    return overrides


def run_family(family: Family, overrides: list[str], work: Path) -> dict:
    """Run ``family``'s recipe with ``overrides`` in ``work/<name>``; its results rows and seconds."""
    recipe = load_recipe(ROOT / family.recipe, overrides)  # checked whole before anything runs
    started = time.perf_counter()
    table = run_recipe(recipe, work / family.name)
    seconds = time.perf_counter() - started
    print(f"{family.name}: {seconds:.1f} s", flush=True)
    return {"recipe": family.recipe, "overrides": overrides, "seconds": seconds, "rows": table.rows,
            "mixed_precision": PRECISION if family.precision_key else "no (the recipe has no mixed-precision key)"}


def engine_overhead(dry: bool, out: Path) -> dict:
    """``benchmarks/engine_overhead.py --paired`` in a child process with CUDA hidden; its JSON and seconds."""
    steps = 6 if dry else 2000
    command = [sys.executable, str(ROOT / "benchmarks" / "engine_overhead.py"), "--steps", str(steps), "--repeats", "1",
               "--paired", "--out", str(out)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return {"command": " ".join(command[1:]), "device": "cpu (CUDA hidden)", "seconds": time.perf_counter() - started,
            **json.loads(out.read_text())}


def language_steps(lm_teacher: str | None, dry: bool, device: torch.device) -> dict:
    """Seconds per optimizer step of the language recipe's student on ``device`` in bf16 autocast: cross-entropy,
    KD from the teacher's top-k cache, KD from the live teacher (moved to the device in its own dtype)."""
    from distill.losses import LOSSES
    from distill.tasks.language.objectives import LanguageObjective, live_signal
    from distill.tasks.language.run import make_student, prepare, teacher_cache

    family = next(f for f in FAMILIES if f.name == "language")
    recipe = load_recipe(ROOT / family.recipe, family_overrides(family, dry, lm_teacher))
    context = prepare(recipe)
    cache = teacher_cache(context, "train", recipe.signals.k)
    size = recipe.train.batch_size
    batch = {"input_ids": context.train_blocks[:size].to(device), "row": torch.arange(size, device=device)}
    teacher = context.teacher.to(device)
    loss = LOSSES.build("forward_kl")
    objectives = {"ce_step": lambda: LanguageObjective(make_student(recipe, context)),
                  "cached_step": lambda: LanguageObjective(make_student(recipe, context), loss, cache),
                  "live_step": lambda: LanguageObjective(make_student(recipe, context), loss, live_signal(teacher), teacher)}
    steps = 2 if dry else 20
    out = {"tokens_per_step": batch["input_ids"].numel(), "steps_timed": steps, "mixed_precision": PRECISION}
    for name, make in objectives.items():
        out[name] = time_steps(make().to(device), batch, steps, device)
    out["cached_over_ce"] = out["cached_step"]["seconds"] / out["ce_step"]["seconds"]
    out["live_over_ce"] = out["live_step"]["seconds"] / out["ce_step"]["seconds"]
    return out


def time_steps(objective: torch.nn.Module, batch: dict, steps: int, device: torch.device) -> dict:
    """Seconds per forward, backward and AdamW step after one warm-up step, in bf16 autocast."""
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-3)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if PRECISION == "bf16" else nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(steps + 1):
        if i == 1:
            sync()
            started = time.perf_counter()
        with autocast:
            loss = objective(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    seconds = (time.perf_counter() - started) / steps
    return {"seconds": seconds, "tokens_per_second": batch["input_ids"].numel() / seconds}


def headline(rows: list[dict]) -> str:
    """The last row's name and its first few numbers, for the printed summary."""
    if not rows:
        return "–"
    last = rows[-1]
    name = next((str(v) for v in last.values() if isinstance(v, str)), "")
    numbers = [f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float | int) and not isinstance(v, bool)][:3]
    return f"{name}: {', '.join(numbers)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="the same plan on the CPU with a few steps each")
    parser.add_argument("--lm-teacher", help="the language teacher (teacher.source): default the recipe's smollm2")
    parser.add_argument("--families", nargs="+", default=[f.name for f in FAMILIES], choices=[f.name for f in FAMILIES])
    parser.add_argument("--work", type=Path, default=Path("runs/gpu_check"), help="run folders go here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    args = parser.parse_args(argv)
    if not args.dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); run it on a GPU "
              "machine, or add --dry to run the same plan on the CPU with a few steps each.", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry else "cuda")
    name = "cpu (dry run)" if args.dry else torch.cuda.get_device_name(0)
    started = time.perf_counter()
    families = {}
    for family in (f for f in FAMILIES if f.name in args.families):
        families[family.name] = run_family(family, family_overrides(family, args.dry, args.lm_teacher), args.work)
    overhead = engine_overhead(args.dry, args.work / "engine_overhead.json")
    language = language_steps(args.lm_teacher, args.dry, device)
    total = time.perf_counter() - started
    rows = [[n, f"{r['seconds']:.1f}", r["mixed_precision"].split(" ")[0], headline(r["rows"])] for n, r in families.items()]
    engine = next(r for r in overhead["paired"]["rows"] if r["row"] == "engine train()")
    rows.append(["engine overhead (CPU)", f"{overhead['seconds']:.1f}", "no", f"engine × hand-written {engine['ratio']:.2f}"])
    rows.append(["language step", "–", PRECISION, f"cached/ce {language['cached_over_ce']:.2f}, "
                 f"live/ce {language['live_over_ce']:.2f}, ce {language['ce_step']['tokens_per_second']:.0f} tokens/s"])
    print(f"\nGPU check on {name}, torch {torch.__version__}: {total:.0f} s in all")
    print_table(["part", "seconds", "precision", "result"], rows)
    write_json(args.out, {"command": "python benchmarks/gpu_check.py" + (" --dry" if args.dry else ""), "dry": args.dry,
                          "device": name, "torch": torch.__version__, "total_seconds": total, "families": families,
                          "engine_overhead": overhead, "language_step": language})
    return 0


if __name__ == "__main__":
    sys.exit(main())
