"""Step-distillation methods: students at 1, 2, 4 steps vs the teacher, beside the noise floor.

Runs recipes/steps/<prefix><method>.yaml unchanged except for the data set, the seeds
and the evaluation sample count. The teacher is scored at 1, 2, 4, 8 and its full
step count once per seed, every student on the same held-out draw, with the noise
floor (the metric between two independent real draws). Per seed the teacher is
retrained (its seed changes) unless ``--fixed-teacher``. Headline metric: sliced W2
for 2-D toys, Fréchet distance on the classifier's features for images. Goal of
issue 4 on toys: 1-step student within 1.5× and 4-step within 1.1× of the
full-step teacher.

    python benchmarks/steps.py --data 8gaussians checkerboard --seeds 0 1 2
    python benchmarks/steps.py --data mnist --prefix mnist_ --methods progressive consistency \
        --fixed-teacher --samples 2000 --out benchmarks/results/steps_mnist.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.experiment import Run, get_task, load_recipe

RECIPES = Path(__file__).parents[1] / "recipes" / "steps"
METHODS = ["progressive", "consistency", "reflow", "dmd", "shortcut"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["8gaussians", "checkerboard"])
    parser.add_argument("--prefix", default="", help="recipe file prefix, e.g. mnist_")
    parser.add_argument("--fixed-teacher", action="store_true", help="one teacher (seed 0) for every seed")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--set", action="append", default=[], help="extra recipe override for every run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-steps"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/steps_toys.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task("steps")
    records = []  # one per (toy, seed, model row)
    for toy in args.data:
        for seed in args.seeds:
            teacher_rows = None  # scored with the first method, then reused (same teacher, same draw)
            for method in args.methods:
                overrides = [f"data.name={toy}", f"teacher.train.seed={0 if args.fixed_teacher else seed}", f"train.seed={seed}",
                             f"evaluate.seed={1000 + seed}", f"evaluate.samples={args.samples}",
                             "train.progress=false", "teacher.train.progress=false", "evaluate.classifier.train.progress=false",
                             *args.set,
                             *([] if teacher_rows is None else ["evaluate.teacher_steps=[]"])]
                recipe = load_recipe(RECIPES / f"{args.prefix}{method}.yaml", overrides)
                run = Run(args.work / toy / method / f"seed{seed}", recipe)
                started = time.perf_counter()
                task.run(recipe, run)  # as `distill run` does: results.json, report.md, plots
                outcome = json.loads((run.folder / "results.json").read_text())
                scored, details = outcome["rows"][1:], outcome["details"]  # rows[0] is the noise floor
                new_rows = [r for r in scored if not r["model"].startswith("teacher") and r["steps"] in (1, 2, 4)]
                if teacher_rows is None:
                    teacher_rows = [r for r in scored if r["model"].startswith("teacher")]
                    new_rows = teacher_rows + new_rows
                full = next(r for r in teacher_rows if r["steps"] == recipe.teacher.steps)
                headline = "swd" if "swd" in full else "fd"
                for row in new_rows:
                    student = not row["model"].startswith("teacher")
                    metrics = {k: row[k] for k in row if k not in ("model", "steps", "nfe", "ms_per_sample")}
                    records.append({"toy": toy, "seed": seed, "method": method if student else "teacher",
                                    "steps": row["steps"], "nfe": row["nfe"], **metrics, "headline": headline,
                                    "ratio": row[headline] / full[headline], "ms_per_sample": row["ms_per_sample"],
                                    **{f"floor_{k}": v for k, v in details["floor"].items()},
                                    "train_seconds": details["student_train_seconds"] if student else None})
                short = {r["steps"]: round(r[headline], 4) for r in new_rows if not r["model"].startswith("teacher")}
                print(f"{toy} seed {seed} {method}: teacher full {full[headline]:.4f}, student {short} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)

    table, rows = [], []
    for toy in args.data:
        mine = [r for r in records if r["toy"] == toy]
        names = [k for k in ("swd", "mmd", "fd", "precision", "recall", "agreement") if k in mine[0]]
        floors = {k: mean_std([r[f"floor_{k}"] for r in mine if r["method"] == "teacher"]) for k in names}
        rows.append([toy, "real vs real (noise floor)", "–", "–", *(f"{m:.4g} ± {s:.2g}" for m, s in floors.values()),
                     "–", "–", ""])
        for method, steps in dict.fromkeys((r["method"], r["steps"]) for r in mine):
            group = [r for r in mine if r["method"] == method and r["steps"] == steps]
            stats = {k: mean_std([r[k] for r in group]) for k in (*names, "ratio")}
            ms = statistics.mean(r["ms_per_sample"] for r in group)
            goal = {1: 1.5, 4: 1.1}.get(steps) if method != "teacher" and "swd" in names else None
            verdict = "" if goal is None else ("met" if stats["ratio"][0] <= goal else "missed") + f" (≤ {goal}×)"
            table.append({"data": toy, "method": method, "steps": steps, "nfe": group[0]["nfe"], **stats,
                          "ms_per_sample": ms, "goal": verdict, "seeds": len(group)})
            rows.append([toy, method, str(steps), str(group[0]["nfe"]),
                         *(f"{stats[k][0]:.4g} ± {stats[k][1]:.2g}" for k in names),
                         f"{stats['ratio'][0]:.2f} ± {stats['ratio'][1]:.2f}", f"{ms:.3f}", verdict])
    print_table(["data", "model", "steps", "NFE", *names, "× full teacher", "ms/sample", "goal"], rows)
    command = "python benchmarks/steps.py " + " ".join(
        [f"--data {' '.join(args.data)}", f"--prefix {args.prefix}" if args.prefix else "",
         "--fixed-teacher" if args.fixed_teacher else "", f"--methods {' '.join(args.methods)}",
         f"--seeds {' '.join(map(str, args.seeds))}", f"--samples {args.samples}", *(f"--set {s}" for s in args.set)])
    write_json(args.out, {"command": command, "rows": table, "records": records})


if __name__ == "__main__":
    main()
