"""The validation-split runs that chose the quick-start's lr, temperature and steps.

Every run evaluates on 500 samples held out of MNIST-1D's training set (seed 0),
never on the test set; one seed each. Results are in
benchmarks/results/tuning_validation.log.

    python benchmarks/tune_quickstart.py
    python benchmarks/tune_quickstart.py --runs "scratch lr=1e-3 60k" --set train.steps=200   # a quick check
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from distill.experiment import Run, load_recipe
from distill.tasks.classification.run import load_recipe_data, obtain_teacher, train_distilled, train_scratch

RECIPE = Path(__file__).parents[1] / "src" / "distill" / "recipes" / "quickstart.yaml"
BASE = ["data.validation=500", "train.progress=false", "teacher.train.progress=false"]
RUNS = {  # name: (kind, overrides)
    "fm_transfer T=1 lr=1e-3 20k": ("distill", ["train.steps=20000", "train.lr=0.001"]),
    "fm_transfer T=1 lr=1e-3 60k": ("distill", ["train.lr=0.001"]),
    "fm_transfer T=2 lr=1e-3 60k": ("distill", ["train.lr=0.001", "distill.pairs.0.options.temperature=2.0"]),
    "fm_transfer T=1 lr=3e-3 60k": ("distill", ["train.lr=0.003"]),
    "fm_transfer T=1 lr=1e-2 60k": ("distill", ["train.lr=0.01"]),
    "scratch lr=1e-3 60k": ("none", ["train.lr=0.001"]),
    "scratch lr=3e-3 60k": ("none", ["train.lr=0.003"]),
    "scratch+mixup lr=1e-3 60k": ("mixup", ["train.lr=0.001"]),
    "scratch+mixup lr=3e-3 60k": ("mixup", ["train.lr=0.003"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--set", action="append", default=[], help="extra override for every run, e.g. train.steps=200")
    parser.add_argument("--work", type=Path, default=Path("runs/tune-quickstart"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.work
    for name in args.runs:
        kind, overrides = RUNS[name]
        recipe = load_recipe(RECIPE, BASE + overrides + args.set)
        splits = load_recipe_data(recipe)
        teacher, (teacher_row,) = obtain_teacher(recipe, splits, Run(work, recipe))
        run = Run(work / name.replace(" ", "_"), recipe)
        if kind == "distill":
            _, row = train_distilled(recipe, splits, teacher, run)
        else:
            _, row = train_scratch(recipe, splits, run, kind)
        print(f"{name:32s} validation acc {100 * row.acc:.1f} %  (teacher {100 * teacher_row.acc:.1f} %)", flush=True)


if __name__ == "__main__":
    main()
