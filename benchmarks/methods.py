"""Every method recipe in recipes/methods/ against the same student trained from scratch.

Same teacher, student, optimizer, step budget and data for every row; the
scratch baselines (plain, and with mixup — the augmentation function matching
uses) are trained in the same run; "vs scratch" is against the plain one. One teacher (its recipe seed)
serves all rows; students vary by seed.

    python benchmarks/methods.py --seeds 0 1 2 --steps 6000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import mean_std, print_table, verdict, write_json

from distill.experiment import Run, load_recipe
from distill.tasks.classification.run import load_recipe_data, obtain_teacher, train_distilled, train_scratch

RECIPES = Path(__file__).parents[1] / "recipes" / "methods"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--methods", nargs="+", default=sorted(p.stem for p in RECIPES.glob("*.yaml")))
    parser.add_argument("--set", action="append", default=[], help="override for every recipe, e.g. data.name=mnist")
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished runs under --work (their ms/step is then not measured)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-methods"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/methods_mnist1d.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def recipe(method: str, seed: int):
        overrides = [f"train.seed={seed}", f"train.steps={args.steps}", f"train.eval_every={args.steps}", "train.progress=false",
                     *args.set]
        loaded = load_recipe(RECIPES / f"{method}.yaml", overrides)
        for config in ([] if loaded.teacher == "self" else getattr(loaded.teacher, "teachers", [loaded.teacher])):
            config.train.progress = False
        return loaded

    base = recipe("kd", args.seeds[0])
    splits = load_recipe_data(base)
    teachers = {}
    results: dict[str, list[float]] = {"scratch": [], "scratch_mixup": []}
    seconds: dict[str, list[float]] = {"scratch": [], "scratch_mixup": []}
    for seed in args.seeds:
        for name, augment in (("scratch", "none"), ("scratch_mixup", "mixup")):
            started = time.perf_counter()
            spec = recipe("kd", seed)
            _, row = train_scratch(spec, splits, Run(args.work / name / f"seed{seed}", spec, args.resume), augment)
            results[name].append(100 * row.acc)
            seconds[name].append(row.seconds / row.steps)
            print(f"seed {seed} {name} {100 * row.acc:.2f} % ({time.perf_counter() - started:.0f} s)", flush=True)
        for method in args.methods:
            spec = recipe(method, seed)
            key = repr(spec.teacher)
            if key not in teachers:
                teachers[key] = obtain_teacher(spec, splits, Run(args.work / "teachers" / method, spec, args.resume))
            teacher, teacher_rows = teachers[key]
            started = time.perf_counter()
            _, row = train_distilled(spec, splits, teacher, Run(args.work / method / f"seed{seed}", spec, args.resume))
            results.setdefault(method, []).append(100 * row.acc)
            seconds.setdefault(method, []).append(row.seconds / row.steps)
            print(f"seed {seed} {method} {100 * row.acc:.2f} % ({time.perf_counter() - started:.0f} s)", flush=True)

    scratch_mean = mean_std(results["scratch"])[0]
    table, rows = [], []
    for method, accs in results.items():
        mean, std = mean_std(accs)
        gain = mean - scratch_mean
        judged = "baseline" if method.startswith("scratch") else verdict(accs, results["scratch"])
        measured = [v for v in seconds[method] if v > 1e-4]  # a reused (--resume) run took no time
        ms = 1000 * mean_std(measured)[0] if measured else float("nan")
        table.append({"method": method, "acc_mean": mean, "acc_std": std, "accs": accs, "gain": gain, "verdict": judged, "ms_per_step": ms})
        rows.append([method, f"{mean:.2f} ± {std:.2f}", f"{gain:+.2f}", judged, f"{ms:.2f}"])
    teacher_accs = {k: [round(100 * r.acc, 2) for r in v[1]] for k, v in teachers.items()}
    print_table(["method", "test acc (%)", "vs scratch", "verdict (2σ)", "ms/step"], rows)
    sets = ("".join(f" --set {item}" for item in args.set) + f" --methods {' '.join(args.methods)}"
            + (" --resume" if args.resume else ""))
    write_json(args.out, {"command": f"python benchmarks/methods.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps}{sets}",
                          "dataset": splits.name, "teachers": teacher_accs, "rows": table})


if __name__ == "__main__":
    main()
