"""Heterogeneous teacher/student pairs on MNIST: CNN → tiny ViT and tiny ViT → CNN, KD, OFA, function matching.

Both pairs use a 20,000-image MNIST training subset, the full 10,000 test images
and the step budgets of recipes/hetero_*.yaml; scratch students are trained in the
same run with the same budget.

    python benchmarks/heterogeneous.py --seeds 0 1 2
    python benchmarks/heterogeneous.py --seeds 0 1 2 --set train.steps=6000 --out benchmarks/results/heterogeneous_6k.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.experiment import Run, load_recipe
from distill.tasks.classification.run import load_recipe_data, obtain_teacher, train_distilled, train_scratch

ROOT = Path(__file__).parents[1] / "recipes"
PAIRS = {"CNN → ViT": ROOT / "hetero_cnn_to_vit.yaml", "ViT → CNN": ROOT / "hetero_vit_to_cnn.yaml"}
KD = [{"student": "output", "teacher": "output", "loss": "kd", "options": {"temperature": 4.0, "alpha": 0.9}}]
FM = [{"student": "output", "teacher": "output", "loss": "kd", "options": {"temperature": 1.0, "alpha": 1.0}}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="extra recipe override for every run (quick checks)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-hetero"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/heterogeneous.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, table = [], []
    for pair, path in PAIRS.items():
        def recipe(seed: int, pairs=None, augment="none"):
            loaded = load_recipe(path, [f"train.seed={seed}", "train.progress=false", "teacher.train.progress=false",
                                        *args.set])
            if pairs is not None:
                loaded.distill = loaded.distill.model_validate({**loaded.distill.model_dump(), "pairs": pairs,
                                                                "task_weight": 0.0, "augment": augment})
            return loaded

        base = recipe(args.seeds[0])
        splits = load_recipe_data(base)
        teacher, (teacher_row,) = obtain_teacher(base, splits, Run(args.work / path.stem, base))
        accs: dict[str, list[float]] = {"scratch": [], "scratch + mixup": [], "kd": [], "ofa": [],
                                        "function matching": []}
        for seed in args.seeds:
            folder = args.work / path.stem / f"seed{seed}"
            scratch, kd, ofa, fm = recipe(seed), recipe(seed, KD), recipe(seed), recipe(seed, FM, "mixup")
            accs["scratch"].append(100 * train_scratch(scratch, splits, Run(folder, scratch), "none")[1].acc)
            accs["scratch + mixup"].append(100 * train_scratch(scratch, splits, Run(folder, scratch), "mixup")[1].acc)
            accs["kd"].append(100 * train_distilled(kd, splits, teacher, Run(folder / "kd", kd))[1].acc)
            accs["ofa"].append(100 * train_distilled(ofa, splits, teacher, Run(folder / "ofa", ofa))[1].acc)
            accs["function matching"].append(100 * train_distilled(fm, splits, teacher, Run(folder / "fm", fm))[1].acc)
            print(f"{pair} seed {seed}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in accs.items()), flush=True)
        for method, values in accs.items():
            mean, std = mean_std(values)
            rows.append([pair, f"{100 * teacher_row.acc:.2f}", method, f"{mean:.2f} ± {std:.2f}"])
            table.append({"pair": pair, "teacher_acc": 100 * teacher_row.acc, "method": method, "acc_mean": mean, "acc_std": std, "accs": values})
    print_table(["pair", "teacher acc (%)", "student", "test acc (%)"], rows)
    sets = "".join(f" --set {item}" for item in args.set)
    write_json(args.out, {"command": f"python benchmarks/heterogeneous.py --seeds {' '.join(map(str, args.seeds))}{sets}",
                          "rows": table})


if __name__ == "__main__":
    main()
