"""Score distillation into 2-D particles: every guidance under trained flow priors of two toys.

Runs ``recipes/score/particles_<guidance>.yaml`` (1,024 particles from N(0, I), 2,000 steps) for
each guidance, each toy and each seed, through the same runner as ``distill run``; the prior is
trained once per toy and cached. Reported beside the same statistics of an independent real draw
(the noise floor), the initial state and the prior's own 32-step samples: sliced W2 and MMD² to
held-out points, and on 8 Gaussians the mean distance to the nearest mode, the mean per-mode
spread and the modes covered. Mean ± std over seeds.

    python benchmarks/score_particles.py --seeds 0 1 2
    python benchmarks/score_particles.py --recipes digits --toys digits --seeds 0 1   # images, CFG prior

With ``--recipes digits`` the runs are ``recipes/score/digits_<guidance>.yaml`` where one exists, else
``digits_sds.yaml`` with its guidance replaced: 100 digit images under a class-conditional prior with
classifier-free guidance, scored by Fréchet distance, precision / recall, label agreement and the share
of over-saturated pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.tasks.score.run import run_score_recipe

GUIDANCES = ("sds", "vsd", "ism", "ssd", "csd", "dsd")
KEYS = ("swd", "mmd", "mode_distance", "mode_spread", "modes_covered", "fd", "precision", "recall", "agreement",
        "out_of_range", "pixel_mean", "pixel_std", "seconds", "evaluations_per_step")


def recipe_for(family: str, guidance: str, toy: str, seed: int):
    """The recipe of ``guidance`` in ``family`` (``particles`` or ``digits``) at ``seed``."""
    path = Path(f"recipes/score/{family}_{guidance}.yaml")
    overrides = [f"train.seed={seed}", "train.progress=false", "prior.train.progress=false"]
    if not path.exists():
        path, overrides = Path(f"recipes/score/{family}_sds.yaml"), [*overrides, f"guidance.name={guidance}"]
    if family == "particles":
        overrides.append(f"data.name={toy}")
    return load_recipe(path, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--toys", nargs="+", default=["8gaussians", "checkerboard"])
    parser.add_argument("--guidances", nargs="+", default=list(GUIDANCES))
    parser.add_argument("--recipes", choices=["particles", "digits"], default="particles")
    parser.add_argument("--work", type=Path, default=Path("/tmp/distill_score_particles"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/score_particles.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, dict[str, list[dict]]] = {}
    for toy in args.toys:
        table = results.setdefault(toy, {})
        for guidance in args.guidances:
            for seed in args.seeds:
                recipe = recipe_for(args.recipes, guidance, toy, seed)
                outcome = run_score_recipe(recipe, Run(args.work / toy / f"{guidance}_seed{seed}", recipe))
                for row in outcome.table.rows:
                    name = guidance if row["model"] == guidance else row["model"]
                    if name != guidance and guidance != args.guidances[0]:
                        continue  # the references are the same for every guidance: keep the first's
                    table.setdefault(name, []).append({k: v for k, v in row.items() if k != "model"})
                print(f"{toy} {guidance} seed {seed}: "
                      f"{ {k: round(v, 4) for k, v in table[guidance][-1].items() if isinstance(v, float)} }",
                      flush=True)
    for toy, table in results.items():
        keys = [k for k in KEYS if any(k in r for rows in table.values() for r in rows)]
        lines = []
        for name, rows in table.items():
            cells = [name]
            for key in keys:
                values = [r[key] for r in rows if key in r]
                if not values:
                    cells.append("–")
                    continue
                mean, std = mean_std([float(v) for v in values])
                cells.append(f"{mean:.4f} ± {std:.4f}" if key in ("mmd", "out_of_range") else f"{mean:.3f} ± {std:.3f}")
            lines.append(cells)
        print(f"\n{toy}")
        print_table(["particles", *keys], lines)
    write_json(args.out, {"command": f"python benchmarks/score_particles.py --recipes {args.recipes} --toys "
                                     f"{' '.join(args.toys)} --seeds {' '.join(map(str, args.seeds))}",
                          "results": results})


if __name__ == "__main__":
    main()
