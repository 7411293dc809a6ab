"""3-D representation distillation (issue 28): conversion (PVD), compaction (LightGaussian, Distilled-3DGS)
and feature fields (Feature 3DGS) over seeds and meshes, each run through ``distill.run`` on the shipped
recipes.

* ``--study convert`` (``recipes/scene/convert_voxels_to_field.yaml`` unless ``--recipe`` says otherwise):
  per mesh, mean ± std over seeds of held-out PSNR / SSIM against the mesh and the teacher, Chamfer,
  parameters, train seconds and the seconds to the teacher's PSNR − 0.5 dB of the student fitted to the
  views and of the converted one; PVD's claim is read as the ratio of those two times (goal: the
  converted student at most a third of the baseline's time; "never" when one never reaches it).
* ``--study compact`` (``recipes/scene/compact_gaussians.yaml``): the teacher, the small student fitted
  to the views, pruning alone, pruning fine-tuned on the views, pruning distilled; PSNR, SSIM, Chamfer,
  Gaussians, render ms; goals: the distilled student within 1 dB of the teacher and at least 1 dB above
  the small student fitted to the (few) views.
* ``--study lift`` (``recipes/scene/lift_features.yaml``): feature fields (Feature 3DGS) — the 2-D part
  segmenter on the mesh's held-out renders, the lifted field of C channels and the C/4 + 1×1 decoder one;
  part mIoU, feature cosine, channels, params, render ms; goals: the lifted field's held-out mIoU at least
  the 2-D network's, and the C/4 variant within 1 point of C at less than half its render time.

Each seed sets ``train.seed`` and ``teacher.train.seed`` (so the teacher is refitted per seed; fitted
teachers are cached by content, a second invocation reuses them); a lift run's segmenter is seeded too.

    python benchmarks/scene.py --study convert --meshes cow elephant --seeds 0 1 2
    python benchmarks/scene.py --study compact --meshes cow elephant --seeds 0 1 2
    python benchmarks/scene.py --study lift --meshes cow elephant --seeds 0 1 2
    python benchmarks/scene.py --study convert --recipe recipes/scene/convert_voxels_to_gaussians.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.experiment.launch import run

RECIPES = {"convert": Path("recipes/scene/convert_voxels_to_field.yaml"),
           "compact": Path("recipes/scene/compact_gaussians.yaml"),
           "lift": Path("recipes/scene/lift_features.yaml")}
#: per study, overrides every run adds (``{seed}`` is the run's seed): a lift run's 2-D segmenter is retrained per seed
STUDY_OVERRIDES = {"lift": ("method.options.segmenter.train.seed={seed}", "method.options.segmenter.train.progress=false")}
KEYS = {"convert": ("psnr", "ssim", "psnr_teacher", "chamfer", "params", "seconds", "seconds_to_target"),
        "compact": ("psnr", "ssim", "psnr_teacher", "chamfer", "gaussians", "render_ms", "seconds"),
        "lift": ("miou", "cosine", "channels", "params", "render_ms", "seconds")}


def cell(values: list, key: str, teacher: bool) -> str:
    """``mean ± std`` of the values that exist, with how many runs never reached the target (the teacher's
    own row has no time to reach it)."""
    present = [float(v) for v in values if v is not None]
    missing = len(values) - len(present)
    if not present:
        return "never" if key == "seconds_to_target" and not teacher else "–"
    mean, std = mean_std(present)
    spec = (".4f" if key == "chamfer" else ".3f" if key in ("miou", "cosine")
            else ".0f" if key in ("params", "gaussians", "channels") else ".2f")
    text = f"{mean:{spec}} ± {std:{spec}}"
    return text + (f" ({missing}/{len(values)} never)" if missing and key == "seconds_to_target" else "")


def headline(row: dict) -> str:
    """A row's main number: part mIoU where it has one (a feature-field run), else held-out PSNR."""
    return f"mIoU {row['miou']:.3f}" if row.get("miou") is not None else f"{row['psnr']:.2f} dB"


def run_seeds(args, mesh: str) -> list[dict]:
    """One run of the recipe per seed on ``mesh``; each run's ``results.json``."""
    results = []
    for seed in args.seeds:
        folder = args.work / args.study / mesh / f"seed{seed}"
        overrides = [f"views.meshes=[{mesh}]", f"train.seed={seed}", f"teacher.train.seed={seed}",
                     "train.progress=false", "teacher.train.progress=false", *STUDY_OVERRIDES.get(args.study, ()),
                     *args.set]
        overrides = [o.format(seed=seed) for o in overrides]
        run(args.recipe, folder, overrides)
        results.append(json.loads((folder / "results.json").read_text()))
        rows = {r["model"]: r for r in results[-1]["rows"]}
        print(f"{mesh} seed {seed}: " + "; ".join(f"{name}: {headline(row)}" for name, row in rows.items()), flush=True)
    return results


def convert_goal(runs: list[dict]) -> str:
    """PVD's claim per seed: the converted student's time to the target against the baseline's, and at
    equal quality (the lower of the two final PSNRs, which both reach)."""
    verdicts = []
    for result in runs:
        baseline, converted = (row.get("seconds_to_target") for row in result["rows"][1:3])
        if converted is None:
            verdict = "converted never reached the target"
        elif baseline is None:
            verdict = f"baseline never reached the target (converted: {converted:.0f} s)"
        else:
            verdict = (f"speed-up {baseline / converted:.2f}× ({baseline:.0f} s vs {converted:.0f} s, goal ≥ 3×: "
                       f"{'met' if converted <= baseline / 3 else 'missed'})")
        equal = result["details"].get("equal_quality")
        if equal:
            verdict += f"; at equal quality ({equal['psnr']:.2f} dB) the conversion took {equal['ratio']:.2f}× the time"
        verdicts.append(verdict)
    return "; ".join(verdicts)


def compact_goal(runs: list[dict]) -> str:
    """The compaction goals per seed: within 1 dB of the teacher, at least 1 dB above the small student."""
    verdicts = []
    for result in runs:
        rows = result["rows"]
        teacher, small, distilled = rows[0]["psnr"], rows[1]["psnr"], rows[-1]["psnr"]
        verdicts.append(f"{distilled - teacher:+.2f} dB vs teacher ({'met' if distilled >= teacher - 1 else 'missed'}), "
                        f"{distilled - small:+.2f} dB vs small ({'met' if distilled >= small + 1 else 'missed'})")
    return "; ".join(verdicts)


def lift_goal(runs: list[dict]) -> str:
    """The feature-field goals per seed: the lifted field's held-out mIoU at least the 2-D network's (run on the
    mesh's renders); the reduced field within 1 point of the full one at less than half its render time."""
    verdicts = []
    for result in runs:
        network, _, full, reduced = (row for row in result["rows"][1:5])
        gain = 100 * (full["miou"] - network["miou"])
        points = 100 * (reduced["miou"] - full["miou"])
        ratio = reduced["render_ms"] / full["render_ms"]
        verdicts.append(f"lifted {gain:+.1f} points vs 2-D ({'met' if gain >= 0 else 'missed'}), C/4 {points:+.1f} points "
                        f"vs C ({'met' if points >= -1 else 'missed'}) at {ratio:.2f}× render time "
                        f"({'met' if ratio < 0.5 else 'missed'})")
    return "; ".join(verdicts)


GOALS = {"convert": convert_goal, "compact": compact_goal, "lift": lift_goal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=sorted(RECIPES), default="convert")
    parser.add_argument("--recipe", type=Path, default=None, help="default: the study's shipped recipe")
    parser.add_argument("--meshes", nargs="+", default=["cow", "elephant"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override for every run, e.g. train.steps=100 (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/distill_scene_bench"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.recipe = args.recipe or RECIPES[args.study]
    torch.set_num_threads(args.threads)
    keys, summary = KEYS[args.study], {}
    for mesh in args.meshes:
        runs = run_seeds(args, mesh)
        labels = [row["model"] for row in runs[0]["rows"]]
        lines = [[label, *(cell([r["rows"][i].get(k) for r in runs], k, i == 0) for k in keys)]
                 for i, label in enumerate(labels)]
        goal = GOALS[args.study](runs)
        print(f"\n{mesh}: {args.recipe} over seeds {args.seeds}")
        print_table(["row", *keys], lines)
        print(f"goal: {goal}")
        summary[mesh] = {"rows": lines, "goal": goal, "runs": [r["rows"] for r in runs],
                         "equal_quality": [r["details"].get("equal_quality") for r in runs],
                         "teacher_psnr": [r["details"]["teacher_psnr"] for r in runs]}
    out = args.out or Path(f"benchmarks/results/scene_{args.study}.json")
    command = (f"python benchmarks/scene.py --study {args.study} --recipe {args.recipe} --meshes {' '.join(args.meshes)} "
               f"--seeds {' '.join(map(str, args.seeds))}" + "".join(f" --set {s}" for s in args.set))
    write_json(out, {"command": command, "columns": ["row", *keys], "results": summary})


if __name__ == "__main__":
    main()
