"""Point-cloud KD (recipes/points/pointdistiller.yaml): scratch vs KD vs KD + PointDistiller.

One DGCNN teacher (the recipe's seed) serves every row; the small PointNet student is trained from scratch,
by logit KD alone (the recipe's KD pair) and by KD + PointDistiller (the recipe as written), with the same
data, optimizer and step budget, over several seeds. A row whose mean is within 2σ (the larger std of the
row and scratch, times two) of scratch is a tie.

    python benchmarks/points.py --seeds 0 1 2
    python benchmarks/points.py --seeds 0 1 --set train.steps=20 --set teacher.train.steps=20   # smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import mean_std, print_table, verdict, write_json

from distill.experiment import Run, load_recipe
from distill.metrics.cost import parameter_count
from distill.tasks.classification.run import (
    build_student,
    load_recipe_data,
    obtain_teacher,
    train_distilled,
    train_scratch,
)

RECIPE = Path(__file__).parents[1] / "recipes" / "points" / "pointdistiller.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], help="override for every run, e.g. data.options.partial=1.0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-points"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/points.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def recipe(seed: int, only_kd: bool = False):
        loaded = load_recipe(RECIPE, [f"train.seed={seed}", "train.progress=false", "teacher.train.progress=false",
                                      *args.set])
        if only_kd:
            pairs = [p for p in loaded.distill.pairs if p.loss == "kd"]
            loaded.distill = loaded.distill.model_validate({**loaded.distill.model_dump(), "pairs": pairs})
        return loaded

    base = recipe(args.seeds[0])
    splits = load_recipe_data(base)
    teacher, (teacher_row,) = obtain_teacher(base, splits, Run(args.work / "teacher", base))
    accs: dict[str, list[float]] = {"scratch": [], "kd": [], "kd + pointdistiller": []}
    seconds: dict[str, list[float]] = {name: [] for name in accs}
    for seed in args.seeds:
        folder = args.work / f"seed{seed}"
        for name in accs:
            started = time.perf_counter()
            if name == "scratch":
                spec = recipe(seed)
                _, row = train_scratch(spec, splits, Run(folder / "scratch", spec), "none")
            else:
                spec = recipe(seed, only_kd=name == "kd")
                _, row = train_distilled(spec, splits, teacher, Run(folder / name.replace(" + ", "_"), spec))
            accs[name].append(100 * row.acc)
            seconds[name].append(time.perf_counter() - started)
            print(f"seed {seed} {name}: {accs[name][-1]:.2f} % ({seconds[name][-1]:.0f} s)", flush=True)

    scratch_mean = mean_std(accs["scratch"])[0]
    rows, table = [], []
    for name, values in accs.items():
        mean, std = mean_std(values)
        judged = "baseline" if name == "scratch" else verdict(values, accs["scratch"])
        rows.append([name, f"{mean:.2f} ± {std:.2f}", f"{mean - scratch_mean:+.2f}", judged,
                     f"{mean_std(seconds[name])[0]:.0f}"])
        table.append({"method": name, "acc_mean": mean, "acc_std": std, "accs": values, "gain": mean - scratch_mean,
                      "verdict": judged, "seconds": seconds[name]})
    student_params = parameter_count(build_student(base, splits))
    print(f"teacher ({base.teacher.model}): {100 * teacher_row.acc:.2f} %, {teacher_row.params:,} parameters; "
          f"student ({base.student.model}): {student_params:,} parameters")
    print_table(["student", "test acc (%)", "vs scratch", "verdict (2σ)", "seconds / run"], rows)
    sets = "".join(f" --set {item}" for item in args.set)
    write_json(args.out, {"command": f"python benchmarks/points.py --seeds {' '.join(map(str, args.seeds))}{sets}",
                          "teacher_acc": 100 * teacher_row.acc, "teacher_params": teacher_row.params,
                          "student_params": student_params, "rows": table})


if __name__ == "__main__":
    main()
