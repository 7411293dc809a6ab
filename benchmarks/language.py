"""Language-model distillation: SmolLM2-135M-Instruct into a small student on Shakespeare.

Every row trains the same student architecture from the same initialisation seed for the same
number of steps on the same training blocks (equal token budget), and is scored on held-out plays
never trained on: perplexity, top-1 agreement with the teacher and KL(teacher ‖ student) on the
teacher's top-128 + tail. Rows: cross-entropy from scratch (the baseline), forward KL, reverse KL,
JSD(0.5) — all from the top-k cache — TAID from the live teacher, and on-policy GKD (λ share of batches sampled by the
student and scored by the live teacher); forward KL from the live teacher alone and with hidden-state
matching (projected, uniform layer map) and MiniLMv2 relations of the last layers. Also measured: the cache's size per token and its error
(KL(full ‖ top-k reconstruction)) for k in {8, 32, 128}, and throughput of a teacher forward, a
cross-entropy step, a cached step and a live-teacher step. Mean ± std over seeds.

    python benchmarks/language.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from common import machine, mean_std, print_table, write_json

from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.losses import LOSSES
from distill.signals import tail_mass, topk_reconstruction_kl
from distill.tasks.language.objectives import LanguageObjective, live_signal
from distill.tasks.language.report import plot_curves
from distill.tasks.language.run import EVAL_K, make_student, prepare, teacher_cache, teacher_stats, train_student

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "language" / "smollm2_shakespeare.yaml"
ROWS = {
    "scratch (CE)": ["method.loss=ce"],
    "forward KL": ["method.loss=forward_kl"],
    "TAID (live teacher)": ["method.loss=taid", "signals.source=live"],
    "reverse KL": ["method.loss=reverse_kl"],
    "JSD(0.5)": ["method.loss=jsd"],
    "on-policy GKD (JSD, λ=0.25)": ["method.loss=jsd", "method.on_policy=0.25"],
    "forward KL + CE (weight 1)": ["method.loss=forward_kl", "method.ce_weight=1.0"],
    "forward KL, live teacher": ["method.loss=forward_kl", "signals.source=live"],
    "forward KL + hidden + relations, live": ["method.loss=forward_kl", "signals.source=live", "method.hidden={weight: 1.0}",
                                              "method.relations={heads: 4}"],
}


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cache_error(context, ks: list[int]) -> list[dict]:
    """Tail mass and KL(full ‖ top-k reconstruction) per token on the held-out blocks, per k."""
    rows = []
    with torch.no_grad():
        logits = torch.cat([context.teacher(input_ids=b).logits for b in context.eval_blocks.split(8)])
    for k in ks:
        rows.append({"k": k, "tail_mass": float(tail_mass(logits, k).mean()),
                     "kl": float(topk_reconstruction_kl(logits, k).mean()), "bytes_per_token": k * 4})
    return rows


def time_steps(objective, batch, steps: int = 4) -> float:
    """Seconds per optimizer step (forward, backward, AdamW) after one warm-up step."""
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-3)
    for i in range(steps + 1):
        if i == 1:
            started = time.perf_counter()
        objective(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - started) / steps


def throughput(recipe, context, train_cache) -> dict:
    """Tokens per second of a cross-entropy step, a cached step and a live-teacher step of one student."""
    size = recipe.train.batch_size
    batch = {"input_ids": context.train_blocks[:size], "row": torch.arange(size)}
    tokens = batch["input_ids"].numel()
    loss = LOSSES.build("forward_kl")
    out = {}
    for name, objective in (("ce_step", LanguageObjective(make_student(recipe, context))),
                            ("cached_step", LanguageObjective(make_student(recipe, context), loss, train_cache)),
                            ("live_step", LanguageObjective(make_student(recipe, context), loss, live_signal(context.teacher),
                                                            context.teacher))):
        seconds = time_steps(objective, batch)
        out[name] = {"seconds": seconds, "tokens_per_second": tokens / seconds, "peak_rss_gb": peak_rss_gb()}
    out["cached_over_ce"] = out["cached_step"]["seconds"] / out["ce_step"]["seconds"]
    out["live_over_ce"] = out["live_step"]["seconds"] / out["ce_step"]["seconds"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), help="row names (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for every row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/language.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_recipe(RECIPE, [*args.set, "train.progress=false"])
    started = time.perf_counter()
    context = prepare(base)
    eval_cache = teacher_cache(context, "eval", EVAL_K)
    train_cache = teacher_cache(context, "train", base.signals.k)
    teacher = teacher_stats(eval_cache)
    build = teacher_stats(train_cache)
    print(f"teacher: held-out perplexity {teacher['perplexity']:.1f}; forward {build['tokens_per_second']:.0f} tokens/s "
          f"({args.threads} threads); caches ready after {time.perf_counter() - started:.0f} s")
    speed = throughput(base, context, train_cache)  # first: its memory peaks are those of the steps alone
    errors = cache_error(context, [8, 32, 128])
    results, curves = {}, {}
    for label in args.rows:
        per_seed = []
        for seed in args.seeds:
            recipe = load_recipe(RECIPE, [*args.set, *ROWS[label], f"train.seed={seed}", "train.progress=false"])
            run = Run(Path("runs/bench_language") / f"{label.split(' (')[0].replace(' ', '_')}_s{seed}", recipe)
            _, facts = train_student(recipe, context, run, eval_cache)
            scores = facts["scores"]
            per_seed.append({**scores, "seconds": facts["seconds"], "train_tokens": facts["train_tokens"]})
            if seed == args.seeds[0]:
                curves[label] = facts["curve"]
            print(f"{label} seed {seed}: ppl {scores['perplexity']:.1f} agree {scores['agreement']:.3f} "
                  f"kl {scores['kl']:.3f} ({facts['seconds']:.0f} s)", flush=True)
        results[label] = {"seeds": per_seed, "parameters": facts["parameters"], "train_tokens": facts["train_tokens"],
                          **{m: mean_std([r[m] for r in per_seed]) for m in ("perplexity", "agreement", "kl", "seconds")}}
    header = ["row", "held-out ppl", "top-1 agree", "KL(t‖s)", "train s"]
    table = [["teacher (SmolLM2-135M)", f"{teacher['perplexity']:.1f}", "100 %", "0", "–"]]
    for label, r in results.items():
        table.append([label, "{:.1f} ± {:.1f}".format(*r["perplexity"]), "{:.1%} ± {:.1%}".format(*r["agreement"]),
                      "{:.3f} ± {:.3f}".format(*r["kl"]), "{:.0f}".format(r["seconds"][0])])
    print_table(header, table)
    print_table(["k", "bytes/token", "tail mass", "KL(full ‖ top-k)"],
                [[str(e["k"]), str(e["bytes_per_token"]), f"{e['tail_mass']:.3f}", f"{e['kl']:.4f}"] for e in errors])
    print_table(["step", "tokens/s", "× CE step", "peak RSS GB"],
                [[name, f"{speed[name]['tokens_per_second']:.0f}", f"{speed[name]['seconds'] / speed['ce_step']['seconds']:.2f}",
                  f"{speed[name]['peak_rss_gb']:.2f}"] for name in ("ce_step", "cached_step", "live_step")])
    plot_curves(curves, args.out.with_suffix(".png"), teacher["perplexity"])
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "machine": machine(), "threads": args.threads, "seeds": args.seeds, "overrides": args.set,
                          "teacher": teacher, "teacher_forward": build, "cache_error": errors, "throughput": speed,
                          "rows": results, "curves": curves, "eval_tokens": int(context.eval_blocks[:, 1:].numel()),
                          "recipe": base.model_dump(mode="json"), "seconds": time.perf_counter() - started})


if __name__ == "__main__":
    main()
