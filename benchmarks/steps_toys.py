"""Every step-distillation method on 2-D toys: students at 1, 2, 4 steps vs the teacher.

Runs recipes/steps/<method>.yaml unchanged except for the toy, the seeds and the
evaluation sample count. Per seed the teacher is retrained (its seed changes) and
scored at 1, 2, 4, 8 and its full step count; every student is scored on the same
held-out draw, with the noise floor (sliced W2 between two independent real draws).
Goal of issue 4: 1-step student SW2 within 1.5× and 4-step within 1.1× of the
full-step teacher's.

    python benchmarks/steps_toys.py --toys 8gaussians checkerboard --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.steps.experiment import run_steps_recipe
from distill.steps.recipe import load_steps_recipe

RECIPES = Path(__file__).parents[1] / "recipes" / "steps"
METHODS = ["progressive", "consistency", "reflow", "dmd", "shortcut"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toys", nargs="+", default=["8gaussians", "checkerboard"])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--set", action="append", default=[], help="extra recipe override for every run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-steps-toys"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/steps_toys.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    records = []  # one per (toy, seed, model row)
    for toy in args.toys:
        for seed in args.seeds:
            teacher_rows = None  # scored with the first method, then reused (same teacher, same draw)
            for method in args.methods:
                overrides = [f"data.name={toy}", f"teacher.train.seed={seed}", f"train.seed={seed}",
                             f"evaluate.seed={1000 + seed}", f"evaluate.samples={args.samples}",
                             "train.progress=false", "teacher.train.progress=false", *args.set,
                             *([] if teacher_rows is None else ["evaluate.teacher_steps=[]"])]
                recipe = load_steps_recipe(RECIPES / f"{method}.yaml", overrides)
                started = time.perf_counter()
                outcome = run_steps_recipe(recipe, args.work / toy / method / f"seed{seed}")["results"]
                new_rows = [r for r in outcome["rows"] if not r["model"].startswith("teacher") and r["steps"] in (1, 2, 4)]
                if teacher_rows is None:
                    teacher_rows = [r for r in outcome["rows"] if r["model"].startswith("teacher")]
                    new_rows = teacher_rows + new_rows
                full = next(r for r in teacher_rows if r["steps"] == recipe.teacher.steps)
                for row in new_rows:
                    student = not row["model"].startswith("teacher")
                    records.append({"toy": toy, "seed": seed, "method": method if student else "teacher",
                                    "steps": row["steps"], "nfe": row["nfe"], "swd": row["swd"], "mmd": row["mmd"],
                                    "ratio": row["swd"] / full["swd"], "ms_per_sample": row["ms_per_sample"],
                                    "floor_swd": outcome["floor"]["swd"], "floor_mmd": outcome["floor"]["mmd"],
                                    "train_seconds": outcome["student_train_seconds"] if student else None})
                short = {r["steps"]: round(r["swd"], 4) for r in new_rows if not r["model"].startswith("teacher")}
                print(f"{toy} seed {seed} {method}: teacher full {full['swd']:.4f}, student {short} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)

    table, rows = [], []
    for toy in args.toys:
        floor = mean_std([r["floor_swd"] for r in records if r["toy"] == toy and r["method"] == "teacher"])
        rows.append([toy, "real vs real (noise floor)", "–", "–", f"{floor[0]:.4f} ± {floor[1]:.4f}", "–", "–", "–", ""])
        keys = dict.fromkeys((r["method"], r["steps"]) for r in records if r["toy"] == toy)
        for method, steps in keys:
            group = [r for r in records if r["toy"] == toy and r["method"] == method and r["steps"] == steps]
            swd, mmd, ratio = (mean_std([r[k] for r in group]) for k in ("swd", "mmd", "ratio"))
            ms = statistics.mean(r["ms_per_sample"] for r in group)
            goal = {1: 1.5, 4: 1.1}.get(steps) if method != "teacher" else None
            verdict = "" if goal is None else ("met" if ratio[0] <= goal else "missed") + f" (≤ {goal}×)"
            table.append({"toy": toy, "method": method, "steps": steps, "nfe": group[0]["nfe"], "swd": swd, "mmd": mmd,
                          "ratio_to_full_teacher": ratio, "ms_per_sample": ms, "goal": verdict, "seeds": len(group)})
            rows.append([toy, method, str(steps), str(group[0]["nfe"]), f"{swd[0]:.4f} ± {swd[1]:.4f}",
                         f"{mmd[0]:.4f} ± {mmd[1]:.4f}", f"{ratio[0]:.2f} ± {ratio[1]:.2f}", f"{ms:.3f}", verdict])
    print_table(["toy", "model", "steps", "NFE", "sliced W2", "MMD²", "× full teacher", "ms/sample", "goal"], rows)
    command = "python benchmarks/steps_toys.py " + " ".join(
        [f"--toys {' '.join(args.toys)}", f"--methods {' '.join(args.methods)}",
         f"--seeds {' '.join(map(str, args.seeds))}", f"--samples {args.samples}", *(f"--set {s}" for s in args.set)])
    write_json(args.out, {"command": command, "rows": table, "records": records})


if __name__ == "__main__":
    main()
