"""Students cut from SmolLM2-135M-Instruct and recovered by distillation, beside the fair baselines.

For each cut (``--cuts``: decoder layers kept of the teacher's 30, and the pruning method of
``distill list language-pruners``; default 15 and 8 layers by block influence, ShortGPT) every row
trains for the same token budget with the same schedule (``--tokens``, ``--seq``, ``--batch``, ``--lr``,
cosine with warm-up) on the same Shakespeare blocks, and is scored on held-out plays never trained on:

- the cut before any training (perplexity only; Minitron's starting point),
- the cut fine-tuned with next-token cross-entropy only (the baseline a distillation must beat),
- forward KL on the teacher's top-k cache, forward KL + CE (equal weight), TAID (live teacher: TAID on
  a top-k cache is refused by the recipe),
- the same architecture from random weights trained with the best distillation loss (``--scratch-loss``),
- the teacher itself.

Metrics: held-out perplexity, KL(teacher ‖ student) on the teacher's top-128 + tail (a lower bound of the
full KL), top-1 agreement with the teacher, tokens per second of the training steps alone (from the
engine's log intervals that hold no evaluation; a forward pass for the teacher and the untrained cut),
and peak resident memory. Every (cut, row, seed) runs in a fresh subprocess whose memory high-water mark
(Linux VmHWM) is reset after the teacher, text and caches are loaded, so the peak is that of building
the student and training it; the RSS at the reset (teacher and data resident, in every row alike) is
reported beside it. Mean ± std over ``--seeds`` (the seed orders the batches; the random-init row also
draws its weights from it). Verdict per cut: the best distilled row against CE only (relative perplexity
change, and the gap in units of σ = √(σ_best² + σ_CE²)), and its ratio to the teacher's perplexity; the
goal is ≥ 15 % below CE only and within 2× of the teacher.

Each job writes its JSON into ``--work`` and is skipped when it exists, so the benchmark can run in pieces
(``--cuts 15 --rows ce fkl_ce --seeds 0``) and a later call reports everything present. A work folder
remembers its settings and refuses a call with other ones.

    python benchmarks/language_prune.py --tokens 150000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.errors import DistillError

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "language" / "smollm2_pruned.yaml"
#: trained rows: label and recipe overrides (on top of the cut, data and schedule every row shares)
TRAINED = {
    "ce": ("CE only", ["method.loss=ce", "method.ce_weight=0", "signals.source=cache"]),
    "fkl": ("forward KL (top-k)", ["method.loss=forward_kl", "method.ce_weight=0", "signals.source=cache"]),
    "fkl_ce": ("forward KL + CE (top-k)", ["method.loss=forward_kl", "method.ce_weight=1.0", "signals.source=cache"]),
    "taid": ("TAID (live teacher)", ["method.loss=taid", "method.ce_weight=0", "signals.source=live"]),
}
DISTILLED = ("fkl", "fkl_ce", "taid")
ROWS = ("before", *TRAINED, "scratch")
MEMORY_METHOD = ("peak RSS (VmHWM) of a fresh process per row and seed, reset after the teacher, text and caches are "
                 "loaded: building the student and training it (or the forward passes of an evaluation); the RSS at the "
                 "reset is reported as base_rss_gb")


@dataclass(frozen=True)
class Cut:
    """Which of the teacher's decoder layers the student keeps (and, optionally, how wide each stays)."""

    layers: int
    method: str
    intermediate: int | None
    heads: int | None
    tokens: int

    @property
    def name(self) -> str:
        width = "".join(f"-{k}{v}" for k, v in (("mlp", self.intermediate), ("heads", self.heads)) if v)
        return f"{self.layers}L-{self.method}{width}"

    def spec(self) -> dict:
        own = {"intermediate": self.intermediate, "heads": self.heads}
        return {"layers": self.layers, "method": self.method, "tokens": self.tokens,
                **{k: v for k, v in own.items() if v is not None}}


def positive(kind, zero: bool = False):
    """An argparse type: ``kind(raw)``, refused unless positive (or zero, with ``zero``)."""
    def parse(raw: str):
        value = kind(raw)
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'non-negative' if zero else 'positive'}, got {raw}")
        return value
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", nargs="+", default=["15", "8"], metavar="LAYERS[:METHOD]",
                        help="decoder layers kept, with a pruning method (default: --method)")
    parser.add_argument("--method", default="block_influence", help="pruning method of cuts that name none")
    parser.add_argument("--intermediate", type=positive(int), help="MLP channels kept per layer (default: all)")
    parser.add_argument("--heads", type=positive(int), help="query heads kept per layer (default: all)")
    parser.add_argument("--calibration-tokens", type=positive(int), default=4096,
                        help="training tokens the importance of layers, channels and heads is measured on")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tokens", type=positive(int), default=150_000, help="training tokens per row (predicted tokens)")
    parser.add_argument("--seq", type=positive(int), default=128, help="tokens per block")
    parser.add_argument("--batch", type=positive(int), default=8, help="blocks per step")
    parser.add_argument("--lr", type=positive(float), default=3e-4)
    parser.add_argument("--scratch-lr", type=positive(float), help="learning rate of the random-init row (default: --lr)")
    parser.add_argument("--scratch-loss", choices=DISTILLED, default="fkl_ce", help="the random-init row's loss")
    parser.add_argument("--warmup", type=positive(int, zero=True), default=10, help="warm-up steps (at most a tenth of the steps)")
    parser.add_argument("--k", type=positive(int), default=32, help="top-k of the teacher's training cache")
    parser.add_argument("--eval-blocks", type=positive(int), default=64, help="held-out blocks scored")
    parser.add_argument("--curve-points", type=positive(int), default=8, help="evaluations during training (curves)")
    parser.add_argument("--threads", type=positive(int), default=1, help="torch threads of every job")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_language_prune"), help="jobs' results and runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/language_prune.json"))
    parser.add_argument("--job", help=argparse.SUPPRESS)  # set by the parent for its subprocesses
    args = parser.parse_args(argv)
    if args.seq < 8:
        parser.error(f"--seq must be at least 8 tokens, got {args.seq}")
    args.cuts = [parse_cut(parser, raw, args) for raw in args.cuts]
    return args


def parse_cut(parser: argparse.ArgumentParser, raw: str, args: argparse.Namespace) -> Cut:
    from distill.tasks.language.methods.prune import PRUNERS

    layers, _, method = raw.partition(":")
    method = method or args.method
    if not layers.isdigit() or int(layers) < 1:
        parser.error(f"--cuts: {raw!r} must be LAYERS or LAYERS:METHOD with LAYERS a positive integer")
    if method not in PRUNERS.names():
        parser.error(f"--cuts / --method: {method!r} is not a pruning method; use one of {PRUNERS.names()}")
    return Cut(int(layers), method, args.intermediate, args.heads, args.calibration_tokens)


def steps_of(args) -> int:
    return math.ceil(args.tokens / (args.batch * (args.seq - 1)))


def evaluations_of(args) -> int:
    """Evaluations during a training job: every ``eval_every`` steps and at the end."""
    steps = steps_of(args)
    every = max(1, steps // args.curve_points)
    return steps // every + bool(steps % every)


def settings(args) -> dict:
    """What makes two calls' results comparable (the work folder refuses a call with other settings)."""
    return {k: getattr(args, k) for k in ("tokens", "seq", "batch", "lr", "scratch_lr", "scratch_loss", "warmup", "k",
                                          "eval_blocks", "curve_points", "threads", "calibration_tokens")}


def recipe_for(args, cut: Cut, row: str, seed: int, extra: tuple[str, ...] = ()):
    """The recipe of one row of one cut: the cut, the shared data and schedule, the row's loss (``extra``: more
    overrides)."""
    from distill.experiment.recipe import load_recipe

    steps = steps_of(args)
    eval_every = max(1, steps // args.curve_points)
    loss_row = args.scratch_loss if row == "scratch" else row if row in TRAINED else "ce"
    lr = (args.scratch_lr or args.lr) if row == "scratch" else args.lr
    sets = [f"student.prune={json.dumps(cut.spec())}", f"data.block_length={args.seq}",
            f"data.train_blocks={steps * args.batch}", f"data.eval_blocks={args.eval_blocks}", f"signals.k={args.k}",
            f"train.steps={steps}", f"train.batch_size={args.batch}", f"train.lr={lr}",
            f"train.warmup_steps={min(args.warmup, steps // 10)}", f"train.eval_every={eval_every}",
            f"train.log_every={max(1, eval_every // 2)}", "train.checkpoint_every=0", f"train.seed={seed}",
            "train.progress=false", *TRAINED[loss_row][1], *extra]
    return load_recipe(RECIPE, sets)


def label_of(args, row: str) -> str:
    if row == "before":
        return "cut, before training"
    if row == "scratch":
        return f"random init, {TRAINED[args.scratch_loss][0]}"
    return f"cut + {TRAINED[row][0]}"


# ---------------------------------------------------------------- jobs (each in its own process)


def _status_gb(field: str) -> float:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 2**20


def reset_peak_rss() -> float:
    """Reset this process's memory high-water mark to its current RSS (Linux), which is returned in GB; freed
    memory is handed back to the system first, so that what earlier set-up freed is not counted."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _status_gb("VmRSS")


def peak_rss() -> float:
    return _status_gb("VmHWM")


def measured_eval(model, context, eval_cache) -> dict:
    """Held-out scores of ``model``, with its forward tokens/s and the evaluation's peak memory."""
    from distill.metrics.cost import parameter_count
    from distill.tasks.language.metrics import evaluate_model

    base = reset_peak_rss()
    started = time.perf_counter()
    scores = evaluate_model(model, context.eval_blocks, eval_cache)
    seconds = time.perf_counter() - started
    return {**scores, "parameters": parameter_count(model), "tokens_per_second": context.eval_blocks.numel() / seconds,
            "throughput_of": "forward (evaluation)", "peak_rss_gb": peak_rss(), "base_rss_gb": base}


def training_throughput(history: list[dict], batch: int, seq: int) -> float | None:
    """Tokens per second of training steps alone: the engine logs cumulative samples/s at each logged step, so
    each interval between logged rows has its own time; intervals that end in an evaluation are left out."""
    seconds = tokens = 0.0
    last_step, last_elapsed = 0, 0.0
    for row in history:
        elapsed = row["step"] * batch / row["samples_per_s"]
        if not any(key.startswith("val_") for key in row):
            seconds += elapsed - last_elapsed
            tokens += (row["step"] - last_step) * batch * seq
        last_step, last_elapsed = row["step"], elapsed
    return tokens / seconds if seconds > 0 else None


def job_teacher(args) -> dict:
    from distill.tasks.language.run import EVAL_K, prepare, teacher_cache, teacher_stats

    context = prepare(recipe_for(args, args.cuts[0], "fkl", 0))
    eval_cache = teacher_cache(context, "eval", EVAL_K)
    train_cache = teacher_cache(context, "train", args.k)
    return {**measured_eval(context.teacher, context, eval_cache), "cache_build": teacher_stats(train_cache),
            "train_blocks": len(context.train_blocks), "eval_blocks": len(context.eval_blocks),
            "eval_tokens": int(context.eval_blocks[:, 1:].numel()), "layers": context.teacher.config.num_hidden_layers}


def job_before(args, cut: Cut) -> dict:
    from distill.tasks.language.methods.prune import PRUNERS, calibration_blocks, measure
    from distill.tasks.language.run import EVAL_K, make_student, prepare, teacher_cache

    recipe = recipe_for(args, cut, "before", 0)
    context = prepare(recipe)
    eval_cache = teacher_cache(context, "eval", EVAL_K)
    stats = measure(context.teacher, calibration_blocks(context.train_blocks, cut.tokens))
    kept = PRUNERS.get(cut.method)(stats, cut.layers) if cut.layers < stats.layers else list(range(stats.layers))
    student = make_student(recipe, context)
    return {**measured_eval(student, context, eval_cache), "kept_layers": kept, "block_influence": stats.influence}


def random_init_folder(recipe, context, folder: Path) -> Path:
    """The cut's architecture with fresh weights (the model class's own initialisation, seeded by
    ``train.seed``) as a model folder with the teacher's tokenizer."""
    from distill.tasks.language.run import make_student, save_student

    cut = make_student(recipe, context)
    torch.manual_seed(recipe.train.seed)
    fresh = type(cut)(cut.config)
    save_student(fresh, context.tokenizer, folder)
    return folder


def job_train(args, cut: Cut, row: str, seed: int, folder: Path) -> dict:
    from distill.experiment.runner import Run
    from distill.tasks.language.run import EVAL_K, TRAINING_FOLDER, prepare, teacher_cache, train_student

    recipe = recipe_for(args, cut, row, seed)
    context = prepare(recipe)
    eval_cache = teacher_cache(context, "eval", EVAL_K)
    if recipe.method.loss != "ce" and recipe.signals.source == "cache":
        teacher_cache(context, "train", recipe.signals.k)  # built here if the teacher job has not
    init = None
    if row == "scratch":
        init = random_init_folder(recipe, context, folder / "init")
        recipe = recipe_for(args, cut, row, seed, ("student.prune=null", f"student.folder={init}"))
    base = reset_peak_rss()
    student, facts = train_student(recipe, context, Run(folder, recipe), eval_cache)
    peak = peak_rss()
    log = folder / TRAINING_FOLDER / "metrics.jsonl"
    history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    shutil.rmtree(folder / TRAINING_FOLDER / "checkpoints", ignore_errors=True)  # ~1 GB each; the JSON is what counts
    if init is not None:
        shutil.rmtree(init)
    throughput = training_throughput(history, args.batch, args.seq)
    return {**facts["scores"], "parameters": facts["parameters"], "steps": facts["steps"],
            "train_tokens": facts["train_tokens"], "seconds": facts["seconds"], "curve": facts["curve"],
            "tokens_per_second": throughput, "throughput_of": "training steps (intervals without evaluation)",
            "step_seconds": args.batch * args.seq / throughput if throughput else None,
            "tokens_per_second_with_evals": facts["tokens_per_second"], "peak_rss_gb": peak, "base_rss_gb": base}


def job_path(work: Path, job: str) -> Path:
    return work / f"{job}.json"


def run_job(args) -> None:
    parts = args.job.split("/")
    if parts == ["teacher"]:
        result = job_teacher(args)
    else:
        cut = next(c for c in args.cuts if c.name == parts[0])
        if parts[1] == "before":
            result = job_before(args, cut)
        else:
            result = job_train(args, cut, parts[1], int(parts[2]), args.work / args.job)
    result["job"] = args.job
    path = job_path(args.work, args.job)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(result, indent=1, default=float))
    os.replace(staging, path)  # a killed job leaves no result that a later call would skip


# ---------------------------------------------------------------- the parent: checks, jobs, report


def check_cuts(args) -> None:
    """Every cut against the teacher's config, before any job starts."""
    from transformers import AutoConfig

    from distill.tasks.language.methods.prune import PRUNERS, ActivationStats, check_cut
    from distill.tasks.language.models import resolve_model_folder

    config = AutoConfig.from_pretrained(resolve_model_folder("smollm2"), local_files_only=True)
    n = config.num_hidden_layers
    for cut in args.cuts:
        check_cut(config, cut.layers, cut.intermediate, cut.heads)
        PRUNERS.get(cut.method)(ActivationStats(n, influence=[0.0] * n), cut.layers)
        for row in args.rows:
            recipe_for(args, cut, row, args.seeds[0])


def check_work(args) -> None:
    own = settings(args)
    path = args.work / "settings.json"
    if path.exists():
        held = json.loads(path.read_text())
        if held != own:
            changed = sorted(k for k in own if held.get(k) != own[k])
            sys.exit(f"{args.work} holds results made with other settings ({', '.join(changed)}: "
                     f"{[held.get(k) for k in changed]} there, {[own[k] for k in changed]} now); pass another --work "
                     "or the same settings.")
    args.work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(own, indent=1))


def jobs_of(args) -> list[str]:
    """Teacher first; per cut its untrained row, then seed by seed every trained row (so a partial run
    already compares rows)."""
    jobs = ["teacher"]
    for cut in args.cuts:
        if "before" in args.rows:
            jobs.append(f"{cut.name}/before")
        jobs += [f"{cut.name}/{row}/{seed}" for seed in args.seeds for row in args.rows if row != "before"]
    return jobs


def first_step_estimate(args, job: str) -> str | None:
    """Seconds per step from the first logged step of a training job, and what the row will take."""
    log = args.work / job / "training" / "metrics.jsonl"
    if not log.exists() or not log.read_text().strip():
        return None
    row = json.loads(log.read_text().splitlines()[0])
    per_step = args.batch / row["samples_per_s"]
    steps, evaluations = steps_of(args), evaluations_of(args)
    before = load(args, f"{job.split('/')[0]}/before")  # the same architecture's forward speed
    per_eval = args.eval_blocks * args.seq / before["tokens_per_second"] if before else None
    evals = f"≈ {evaluations * per_eval / 60:.1f} min" if per_eval else "time not known yet"
    return (f"  {job}: {per_step:.2f} s/step after {row['step']} step(s) → ≈ {per_step * steps / 60:.1f} min for "
            f"{steps} steps, plus {evaluations} evaluations ({evals})")


def run_jobs(args) -> None:
    jobs = jobs_of(args)
    todo = [j for j in jobs if not job_path(args.work, j).exists()]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} jobs already in {args.work}; {len(todo)} to run", flush=True)
    argv = sys.argv[1:]
    trained_seconds: list[float] = []
    for i, job in enumerate(todo):
        print(f"[{i + 1}/{len(todo)}] {job}", flush=True)
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, __file__, *argv, "--job", job])
        estimated = job.count("/") < 2
        while True:
            try:
                code = process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                if not estimated and (line := first_step_estimate(args, job)):
                    print(line, flush=True)
                    estimated = True
        if code:
            sys.exit(f"job {job} failed (exit {code}); its output is above. Finished jobs are kept in {args.work}.")
        seconds = time.perf_counter() - started
        left = [j for j in todo[i + 1:] if j.count("/") == 2]
        if job.count("/") == 2:
            trained_seconds.append(seconds)
        pace = f"; ≈ {sum(trained_seconds) / len(trained_seconds) * len(left) / 3600:.1f} h for the {len(left)} " \
               "training jobs left at this pace" if trained_seconds and left else ""
        print(f"  {job} done in {seconds / 60:.1f} min{pace}", flush=True)


def load(args, job: str) -> dict | None:
    path = job_path(args.work, job)
    return json.loads(path.read_text()) if path.exists() else None


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """Perplexity per evaluation step, averaged over seeds."""
    return [{"step": points[0]["step"], "tokens": points[0]["tokens"],
             "perplexity": sum(p["perplexity"] for p in points) / len(points)} for points in zip(*curves, strict=True)]


def summarise(args, cut: Cut) -> dict:
    """Per row of ``cut``: its seeds, mean ± std of each metric, the mean learning curve."""
    rows = {}
    before = load(args, f"{cut.name}/before")
    if before is not None:
        rows["before"] = {"label": label_of(args, "before"), "seeds": [before],
                          **{m: (before[m], 0.0) for m in ("perplexity", "kl", "agreement", "tokens_per_second",
                                                           "peak_rss_gb", "base_rss_gb")},
                          "parameters": before["parameters"], "kept_layers": before["kept_layers"]}
    for row in (r for r in args.rows if r != "before"):
        seeds = [r for s in args.seeds if (r := load(args, f"{cut.name}/{row}/{s}")) is not None]
        if not seeds:
            continue
        curve = mean_curve([s["curve"] for s in seeds])
        if before is not None and row != "scratch":
            curve = [{"step": 0, "tokens": 0, "perplexity": before["perplexity"]}, *curve]
        rows[row] = {"label": label_of(args, row), "seeds": seeds, "parameters": seeds[0]["parameters"],
                     "train_tokens": seeds[0]["train_tokens"], "curve": curve,
                     **{m: mean_std([s[m] for s in seeds]) for m in ("perplexity", "kl", "agreement", "peak_rss_gb",
                                                                     "base_rss_gb")},
                     "tokens_per_second": mean_std([s["tokens_per_second"] for s in seeds if s["tokens_per_second"]]
                                                   or [float("nan")])}
    return rows


def verdict(rows: dict, teacher_perplexity: float) -> dict | None:
    """The best distilled row against CE only, and against the teacher (the issue's goals)."""
    distilled = [r for r in DISTILLED if r in rows]
    if "ce" not in rows or not distilled:
        return None
    best = min(distilled, key=lambda r: rows[r]["perplexity"][0])
    (b, sb), (c, sc) = rows[best]["perplexity"], rows["ce"]["perplexity"]
    change = b / c - 1
    sigma = math.hypot(sb, sc)
    seeds = min(len(rows[best]["seeds"]), len(rows["ce"]["seeds"]))
    gap = abs(b - c) / sigma if sigma > 0 else None
    ratio = b / teacher_perplexity
    out = {"best": best, "best_label": rows[best]["label"], "relative_change_vs_ce": change, "gap_in_sigma": gap,
           "seeds": seeds, "beyond_2_sigma": (gap > 2) if gap is not None and seeds > 1 else None,
           "ratio_to_teacher": ratio, "goal_15_percent_below_ce": change <= -0.15, "goal_within_2x_teacher": ratio <= 2,
           "points_short_of_15_percent": max(0.0, change + 0.15) * 100}
    if "scratch" in rows:
        out["random_init_over_best"] = rows["scratch"]["perplexity"][0] / b
    return out


def plot(args, summaries: dict, teacher_perplexity: float | None, path: Path) -> None:
    from distill.tasks.language.report import draw_curves, plt

    cuts = [c for c in args.cuts if any("curve" in r for r in summaries[c.name]["rows"].values())]
    if not cuts:
        return
    fig, axes = plt.subplots(1, len(cuts), figsize=(6 * len(cuts), 4.5), squeeze=False)
    for ax, cut in zip(axes[0], cuts, strict=True):
        rows = summaries[cut.name]["rows"]
        draw_curves(ax, {r["label"]: r["curve"] for r in rows.values() if "curve" in r}, teacher_perplexity,
                    title=f"{cut.name} (mean over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def report(args, started: float) -> None:
    teacher = load(args, "teacher")
    teacher_ppl = teacher["perplexity"] if teacher else None
    summaries = {}
    for cut in args.cuts:
        rows = summarise(args, cut)
        summaries[cut.name] = {"cut": cut.spec(), "rows": rows,
                               "verdict": verdict(rows, teacher_ppl) if teacher_ppl else None}

    def ms(value, spec):
        return f"{value[0]:{spec}} ± {value[1]:{spec}}"

    table = []
    if teacher:
        table.append(["teacher (SmolLM2-135M, 30 layers)", f"{teacher['parameters'] / 1e6:.1f}M",
                      f"{teacher_ppl:.2f}", "0", "100 %", f"{teacher['tokens_per_second']:.0f} (fwd)",
                      f"{teacher['peak_rss_gb']:.2f} ({teacher['base_rss_gb']:.2f})", "1.00"])
    for cut in args.cuts:
        for key, r in summaries[cut.name]["rows"].items():
            speed = "{:.0f}".format(r["tokens_per_second"][0]) + (" (fwd)" if key == "before" else "")
            ratio = f"{r['perplexity'][0] / teacher_ppl:.2f}" if teacher_ppl else "–"
            table.append([f"{cut.name}: {r['label']}", f"{r['parameters'] / 1e6:.1f}M", ms(r["perplexity"], ".2f"),
                          ms(r["kl"], ".3f"), "{:.1%} ± {:.1%}".format(*r["agreement"]), speed,
                          f"{r['peak_rss_gb'][0]:.2f} ({r['base_rss_gb'][0]:.2f})", ratio])
    print_table(["row", "params", "held-out ppl", "KL(t‖s)", "top-1 agree", "tokens/s", "peak RSS GB (base)",
                 "ppl / teacher"], table)
    for name, summary in summaries.items():
        if "before" in summary["rows"]:
            print(f"{name} keeps the teacher's layers {summary['rows']['before']['kept_layers']}")
        v = summary["verdict"]
        if v is None:
            print(f"{name}: no verdict yet (needs the teacher, CE only and a distilled row)")
            continue
        sigma = "n/a (one seed)" if v["beyond_2_sigma"] is None else \
            f"{v['gap_in_sigma']:.1f}σ ({'>' if v['beyond_2_sigma'] else '≤'} 2σ over {v['seeds']} seeds)"
        print(f"{name}: best distilled = {v['best_label']}: {v['relative_change_vs_ce']:+.1%} perplexity vs CE only "
              f"[goal ≤ −15 %: {'met' if v['goal_15_percent_below_ce'] else 'short by %.1f points' % v['points_short_of_15_percent']}], "
              f"gap {sigma}; {v['ratio_to_teacher']:.2f}× the teacher's perplexity "
              f"[goal ≤ 2×: {'met' if v['goal_within_2x_teacher'] else 'not met'}]")
    missing = [j for j in jobs_of(args) if not job_path(args.work, j).exists()]
    plot(args, summaries, teacher_ppl, args.out.with_suffix(".png"))
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "threads": args.threads, "settings": settings(args),
                          "steps": steps_of(args), "seeds": args.seeds, "teacher": teacher, "cuts": summaries,
                          "memory": MEMORY_METHOD, "missing_jobs": missing, "work": str(args.work),
                          "recipe": recipe_for(args, args.cuts[0], "fkl_ce", args.seeds[0]).model_dump(mode="json"),
                          "seconds": time.perf_counter() - started})


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.job:
        run_job(args)
        return
    started = time.perf_counter()
    try:
        check_cuts(args)
    except DistillError as err:
        sys.exit(str(err))
    check_work(args)
    print(f"{steps_of(args)} steps of {args.batch} × {args.seq} tokens per row ({args.threads} thread(s))", flush=True)
    run_jobs(args)
    report(args, started)


if __name__ == "__main__":
    main()
