"""PSF (Wu et al., CVPR 2023) on point sets: the many-step flow teacher, its reflow at one Euler step, and the
reflow distilled into one step with the MSE loss and with the Chamfer loss, from one reflow, in one run.

Runs recipes/steps/points_psf.yaml (``--set`` overrides it, e.g. a smaller budget) through the library's
pieces: the cached teacher, the scorer of the recipe (MMD-CD, COV, 1-NNA on Chamfer distances against one
held-out half, the other half as the floor), the reflow method's stages (``Reflow.reflow`` once, then
``Reflow.distil`` once per loss with the same budget and pairs). Issue 28's goal: the one-step student's
excess over the floor within 1.5× the teacher's, for MMD-CD (√(MMD-CD − floor)) and 1-NNA (1-NNA − floor).

    python benchmarks/points_psf.py --seed 0 --out benchmarks/results/points_psf.json
    python benchmarks/points_psf.py --set teacher.train.steps=600 --set train.steps=400 ...   # a smoke
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import print_table, write_json

from distill.data.generative import load_generative_data
from distill.diffusion.teacher import obtain_diffusion_model
from distill.experiment import Run, load_recipe
from distill.tasks.steps.methods import STEP_METHODS
from distill.tasks.steps.metrics import make_scorer, score_rows
from distill.tasks.steps.run import steps_context

RECIPE = Path(__file__).parents[1] / "recipes" / "steps" / "points_psf.yaml"
GOAL = 1.5
LOSSES = ("mse", "chamfer")


def excesses(row: dict, floor: dict) -> dict:
    """A row's excess over the floor: MMD-CD's (the scorer's, on the distance scale) and 1-NNA's."""
    return {"mmd_cd": row["excess"], "nna": max(row["nna"] - floor["nna"], 0.0)}


def run(args) -> dict:
    recipe = load_recipe(RECIPE, [f"teacher.train.seed={args.seed}", f"train.seed={args.seed}",
                                  f"evaluate.seed={1000 + args.seed}", "train.progress=false",
                                  "teacher.train.progress=false", *args.set])
    folder = Path(args.folder) / f"seed{args.seed}"
    started = time.perf_counter()
    experiment = Run(folder, recipe)
    splits = load_generative_data(recipe.data.name, recipe.data.options)
    teacher, teacher_info = obtain_diffusion_model(recipe.data.model_dump(mode="json"), recipe.teacher, splits,
                                                   experiment)
    scorer = make_scorer(recipe, splits, experiment)
    rows = [("teacher", row) for row in score_rows(recipe, teacher, {}, scorer)]
    method = STEP_METHODS.build("reflow", **{**recipe.method.options, "distill_steps": 1})
    context = steps_context(recipe, splits, teacher, experiment)
    pairs = context.teacher_pairs(method.pairs or None)
    reflow_steps, distill_steps = method.budgets(context, pairs)
    reflowed = method.reflow(context, pairs, reflow_steps)
    rows.append(("reflow", scorer.run("reflow (no distillation)", method.generator(context.for_sampling(reflowed)), 1)))
    for loss in LOSSES:
        student = method.distil(context, pairs, reflowed, distill_steps, loss, f"reflow_distill_1_{loss}")
        rows.append((f"distilled ({loss})", scorer.run(f"distilled ({loss} loss)", method.generator(student), 1)))
    floor = {k: v for k, v in scorer.floor.items() if k != "floor_spread"}
    records = [{"kind": kind, "model": row.model, "steps": row.steps, "nfe": row.nfe, **row.metrics,
                "ms_per_sample": row.ms_per_sample} for kind, row in rows]
    teacher_full = next(r for r in records if r["kind"] == "teacher" and r["steps"] == recipe.teacher.steps)
    reference = excesses(teacher_full, floor)
    for record in records:
        own = excesses(record, floor)
        record["excess_ratio"] = {k: (own[k] / reference[k] if reference[k] > 0 else None) for k in own}
        record["goal_met"] = (None if record["kind"] == "teacher" else
                              all(r is not None and r <= GOAL for r in record["excess_ratio"].values()))
    return {"recipe": str(RECIPE), "overrides": args.set, "seed": args.seed, "floor": floor,
            "floor_spread": scorer.floor.get("floor_spread"), "scored_sets": len(scorer.real),
            "teacher": {"steps": recipe.teacher.steps, **teacher_info},
            "budget": {"pairs": len(pairs), "reflow_steps": reflow_steps, "distill_steps_per_loss": distill_steps},
            "seconds": time.perf_counter() - started, "rows": records,
            "note": "one seed: no verdict across seeds; goal: excess within 1.5x the full-step teacher's"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="a recipe override, e.g. train.steps=400")
    parser.add_argument("--folder", default="runs/points_psf", help="where the run folders go")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/points_psf.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args)
    floor = result["floor"]
    table = [["real data (noise floor)", "–", "–", f"{floor['mmd_cd']:.4g}", f"{floor['cov']:.3f}",
              f"{floor['nna']:.3f}", "–", "–", "–"]]
    for r in result["rows"]:
        ratio = r["excess_ratio"]
        table.append([r["model"], r["steps"], r["nfe"], f"{r['mmd_cd']:.4g}", f"{r['cov']:.3f}", f"{r['nna']:.3f}",
                      f"{r['excess']:.3g} ({r['excess_low']:.2g}–{r['excess_high']:.2g})",
                      " / ".join("–" if v is None else f"{v:.2f}" for v in ratio.values()),
                      {None: "–", True: "met", False: "not met"}[r["goal_met"]]])
    print_table(["model", "steps", "NFE", "MMD-CD", "COV", "1-NNA", "excess (95 % CI)",
                 "excess / teacher's (MMD, 1-NNA)", f"goal ≤ {GOAL}×"], table)
    print(f"{result['scored_sets']} scored sets; {result['seconds']:.0f} s")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
