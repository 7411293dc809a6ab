"""MNIST-1D: CNN teacher → MLP student (40→100→100→10), every row with the same optimizer and step budget.

Rows: scratch, scratch + mixup, KD, DKD, FitNet, SP, "patient and consistent"
function matching (mixup, teacher and student see the same input), and function
matching with an unlabeled transfer set from MNIST-1D's generator. Attention
transfer needs a spatial student feature, which an MLP does not have; it is
reported as not applicable. One teacher (seed 0) serves every row; students vary
by seed. Prints a table (mean ± std over seeds) and writes JSON.

    python benchmarks/quickstart.py --seeds 0 1 2 3 4            # the BENCHMARKS.md table
    python benchmarks/quickstart.py --validation 500 --rows fm    # tuning: never on the test set
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import machine, mean_std

from distill.experiment import Run, load_recipe
from distill.tasks.classification.run import load_recipe_data, obtain_teacher, train_distilled, train_scratch

KD = {"student": "output", "teacher": "output", "loss": "kd"}
HINT = {"student": "fc2", "teacher": "conv3"}

# name -> (kind, overrides of the quick-start recipe)
ROWS = {
    "scratch": ("scratch", "none", {}),
    "scratch_mixup": ("scratch", "mixup", {}),
    "kd": ("distill", None, {"pairs": [{**KD, "options": {"temperature": 4.0, "alpha": 0.9}}],
                             "augment": "none", "use_transfer": False}),
    "dkd": ("distill", None, {"pairs": [{**KD, "loss": "dkd", "options": {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}}],
                              "task_weight": 1.0, "augment": "none", "use_transfer": False}),
    "fitnet": ("distill", None, {"pairs": [{**HINT, "loss": "fitnet", "weight": 1.0}],
                                 "task_weight": 1.0, "augment": "none", "use_transfer": False}),
    "sp": ("distill", None, {"pairs": [{**HINT, "loss": "sp", "weight": 3000.0}],
                             "task_weight": 1.0, "augment": "none", "use_transfer": False}),
    "fm": ("distill", None, {"pairs": [{**KD, "options": {"temperature": 1.0, "alpha": 1.0}}],
                             "augment": "mixup", "use_transfer": False}),
    "fm_transfer": ("distill", None, {"pairs": [{**KD, "options": {"temperature": 1.0, "alpha": 1.0}}],
                                      "augment": "mixup", "use_transfer": True}),
}
NOT_APPLICABLE = {"at": "attention transfer needs a spatial student feature map; the MLP's features are vectors"}


def recipe_for(row: str, seed: int, args) -> object:
    kind, _, distill = ROWS[row]
    overrides = [f"train.seed={seed}", f"train.steps={args.steps}", "train.progress=false",
                 "teacher.train.progress=false", f"data.options.transfer_size={args.transfer}",
                 f"data.validation={args.validation}", f"train.eval_every={max(1, args.steps // 10)}", *args.set]
    recipe = load_recipe(args.recipe, overrides)
    if kind == "distill":
        recipe.distill = recipe.distill.model_validate({**recipe.distill.model_dump(), **distill})
    return recipe


def run_row(row: str, seed: int, splits, teacher, args) -> dict:
    kind, augment, _ = ROWS[row]
    recipe = recipe_for(row, seed, args)
    run = Run(args.work / row / f"seed{seed}", recipe)
    if kind == "scratch":
        _, result = train_scratch(recipe, splits, run, augment)
    else:
        _, result = train_distilled(recipe, splits, teacher, run)
    return {"acc": result.acc, "seconds": result.seconds, "ms_per_step": 1000 * result.seconds / result.steps,
            "params": result.params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--transfer", type=int, default=50000)
    parser.add_argument("--validation", type=int, default=0, help="tune on this many held-out train samples")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--recipe", default="src/distill/recipes/quickstart.yaml")
    parser.add_argument("--set", action="append", default=[], help="extra recipe override for every row (quick checks)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-quickstart"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quickstart.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = recipe_for("scratch", args.seeds[0], args)
    splits = load_recipe_data(base)
    teacher, (teacher_row,) = obtain_teacher(base, splits, Run(args.work, base))
    print(f"teacher {base.teacher.model}: {100 * teacher_row.acc:.2f} % on {splits.name}; "
          f"train {len(splits.train)}, eval {len(splits.test)}, transfer {len(splits.transfer or [])}")

    results: dict[str, list[dict]] = {row: [] for row in args.rows}
    for seed in args.seeds:
        for row in args.rows:
            started = time.perf_counter()
            results[row].append(run_row(row, seed, splits, teacher, args))
            print(f"seed {seed} {row:14s} acc {100 * results[row][-1]['acc']:.2f} %  ({time.perf_counter() - started:.0f} s)", flush=True)

    scratch_ms = statistics.mean(r["ms_per_step"] for r in results.get("scratch", [])) if "scratch" in results else None
    table = []
    print(f"\n{'row':14s} {'accuracy (%)':>16s} {'ms/step':>8s} {'× scratch step':>15s}")
    for row, runs in results.items():
        mean, std = mean_std([100 * r["acc"] for r in runs])
        ms = statistics.mean(r["ms_per_step"] for r in runs)
        ratio = ms / scratch_ms if scratch_ms else None
        table.append({"row": row, "acc_mean": mean, "acc_std": std, "ms_per_step": ms, "step_ratio": ratio,
                      "accs": [r["acc"] for r in runs], "params": runs[0]["params"]})
        print(f"{row:14s} {mean:9.2f} ± {std:4.2f} {ms:8.3f} {ratio if ratio else float('nan'):15.2f}")
    for row, why in NOT_APPLICABLE.items():
        print(f"{row:14s} not applicable: {why}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": f"python benchmarks/quickstart.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} "
                   f"--transfer {args.transfer} --validation {args.validation}"
                   + "".join(f" --set {item}" for item in args.set),
        "seeds": args.seeds, "teacher_acc": teacher_row.acc, "eval_set": splits.name, "eval_size": len(splits.test),
        "machine": machine(),
        "rows": table, "not_applicable": NOT_APPLICABLE,
    }, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
