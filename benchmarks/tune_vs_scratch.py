"""`distill tune` within a budget on every dataset, beside scratch: does the search ever end below training alone?

Each dataset's recipe is the one ``default_vs_scratch.py`` runs (same teacher, student and schedule), searched
by ``distill.tune`` on a validation split carved from its training data; the chosen setting and the scratch
students (plain and mixup) are then trained on the whole training set with the same budget and scored once on
the test split (the search's ``final/`` run). One search per dataset and seed.

    python benchmarks/tune_vs_scratch.py --budget 4m --seeds 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import mean_std, print_table, write_json
from default_vs_scratch import DEVELOPMENT, SETUPS, recipe

import distill
from distill.experiment.tune import parse_budget


def final_scores(folder: Path) -> dict[str, float]:
    """Test accuracy (%) of the chosen student and the scratch rows of a search's ``final/`` run."""
    rows = json.loads((folder / "final" / "results.json").read_text())["rows"]
    scores = {}
    for row in rows:
        if row["name"].startswith("student distilled"):
            scores["tuned"] = 100 * row["acc"]
        elif row["name"].startswith("student scratch"):
            scores["scratch_mixup" if "mixup" in row["name"] else "scratch"] = 100 * row["acc"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DEVELOPMENT, choices=sorted(SETUPS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", default="4m")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-tune"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tune_vs_scratch.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget = parse_budget(args.budget)

    payload, table = {"args": {**vars(args), "work": str(args.work), "out": str(args.out)}, "datasets": {}}, []
    for dataset in args.datasets:
        results: dict[str, list[float]] = {"scratch": [], "scratch_mixup": [], "tuned": []}
        chosen = []
        for seed in args.seeds:
            spec, _ = recipe(dataset, "default", seed, None)
            folder = args.work / dataset / f"seed{seed}"
            distill.tune(spec, budget_s=budget, out=folder, resume=(folder / "study.db").exists())
            for key, value in final_scores(folder).items():
                results[key].append(value)
            chosen.append((folder / "best_recipe.yaml").read_text().split("\n\n")[0])
        best = max(mean_std(results["scratch"])[0], mean_std(results["scratch_mixup"])[0])
        rows = {k: dict(zip(("mean", "std"), mean_std(v)), accs=v) for k, v in results.items()}
        payload["datasets"][dataset] = {"rows": rows, "chosen": chosen}
        for name, row in rows.items():
            table.append([dataset, name, f"{row['mean']:.2f} ± {row['std']:.2f}", f"{row['mean'] - best:+.2f}"])
    print_table(["dataset", "row", "test acc %", "vs best scratch"], table)
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
