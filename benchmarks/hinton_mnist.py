"""Hinton, Vinyals & Dean (2015) on MNIST: test errors of teacher, scratch student and distilled student.

Paper: teacher (2×1200, dropout, ±2 px jitter) 67 errors; 2×800 student from
scratch 146 errors; distilled with T = 20, 74 errors. The default is a reduced
protocol (10 epochs per model, Adam, cosine; see recipes/hinton_mnist.yaml);
``--full`` trains 60 epochs. Every phase checkpoints, so an interrupted run
continues with ``--resume``.

    python benchmarks/hinton_mnist.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.experiment import Run, load_recipe
from distill.tasks.classification.run import load_recipe_data, obtain_teacher, train_distilled, train_scratch

RECIPE = Path(__file__).parents[1] / "recipes" / "hinton_mnist.yaml"
PAPER = {"teacher": 67, "scratch": 146, "distilled": 74}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--full", action="store_true", help="60 epochs per model instead of 10")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="extra recipe override for every run (quick checks)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-hinton"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hinton_mnist.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epochs = 60 if args.full else 10
    work = args.work / f"epochs{epochs}"

    def recipe(seed: int):
        return load_recipe(RECIPE, [f"train.seed={seed}", f"train.epochs={epochs}", f"teacher.train.epochs={epochs}",
                                    "train.progress=false", "teacher.train.progress=false", *args.set])

    base = recipe(args.seeds[0])
    splits = load_recipe_data(base)
    teacher, (teacher_row,) = obtain_teacher(base, splits, Run(work, base, args.resume))
    errors = {"teacher": [round((1 - teacher_row.acc) * len(splits.test))], "scratch": [], "distilled": []}
    for seed in args.seeds:
        run = Run(work / f"seed{seed}", recipe(seed), args.resume)
        _, row = train_scratch(run.recipe, splits, run, "none")
        errors["scratch"].append(round((1 - row.acc) * len(splits.test)))
        _, row = train_distilled(run.recipe, splits, teacher, run)
        errors["distilled"].append(round((1 - row.acc) * len(splits.test)))
        print(f"seed {seed}: scratch {errors['scratch'][-1]} errors, distilled {errors['distilled'][-1]} errors", flush=True)

    rows = []
    for name, values in errors.items():
        mean, std = mean_std([float(v) for v in values])
        rows.append([name, f"{mean:.1f} ± {std:.1f}", str(values), str(PAPER[name])])
    print_table(["model", f"test errors / {len(splits.test)} (ours, {epochs} epochs)", "per seed", "paper"], rows)
    write_json(args.out, {"command": f"python benchmarks/hinton_mnist.py --seeds {' '.join(map(str, args.seeds))}"
                          + (" --full" if args.full else "") + "".join(f" --set {item}" for item in args.set),
                          "epochs": epochs, "errors": errors, "paper": PAPER})


if __name__ == "__main__":
    main()
