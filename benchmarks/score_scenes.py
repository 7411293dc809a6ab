"""Score distillation into 3-D Gaussians lifted out of a view-conditioned 2-D prior of real meshes.

Two studies, each through the same runner pieces as ``distill run`` (``prepare_scene`` and its
``SceneContext``) and mean ± std over seeds:

* ``--study meshes`` (default): for each mesh, the prior sees ``--views`` renders of that mesh only;
  every guidance starts from the same seeded initial state and is scored beside that initial state
  and direct photometric reconstruction from the prior's training views (same steps, same optimiser)
  — Chamfer distance of the visible surface to the true surface, PSNR / SSIM on held-out views.
* ``--study modes``: one prior sees renders of all ``--meshes`` with no object label; each guidance
  runs from every seed; a result is "recovered" as the mesh nearest to it (Chamfer), and a "blend"
  when even that Chamfer exceeds ``--blend-factor`` × the Chamfer of a direct reconstruction of the
  same mesh. Reported: distinct objects recovered across seeds, blends, the per-seed Chamfer, and
  diversity: the mean Chamfer distance between the results of two seeds.

    python benchmarks/score_scenes.py --meshes cow elephant --seeds 0 1 2
    python benchmarks/score_scenes.py --prior trained --meshes cow elephant --seeds 0 1 2
    python benchmarks/score_scenes.py --study modes --meshes cow elephant pig triceratops --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from common import mean_std, print_table, write_json

from distill.engine.config import GroupConfig
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.scenes import chamfer_distance, surface_points
from distill.tasks.score.methods import GUIDANCES
from distill.tasks.score.objects.scene import prepare_scene

KEYS = ("chamfer", "psnr", "ssim", "seconds", "evaluations_per_step")


def scene_recipe(args, meshes: list[str]):
    prior = {"kind": "exact", "process": "flow", "kappa_degrees": args.kappa} if args.prior == "exact" else {
        "kind": "trained", "model": "unet", "options": {"channels": [16, 32]}, "process": "flow",
        "prediction": "velocity", "train": {"steps": args.prior_steps, "batch_size": 32, "lr": 1e-3,
                                            "schedule": "cosine", "progress": False}}
    return load_recipe({"name": "bench", "task": "score",
                        "views": {"meshes": meshes, "count": args.views, "size": args.size, "elevation": [0.0, 30.0],
                                  "held_out": 16},
                        "prior": prior, "guidance": {"name": "sds"},
                        "object": {"kind": "gaussians", "count": args.gaussians, "channels": 1},
                        "train": {"steps": args.steps, "batch_size": args.batch, "lr": args.lr,
                                  "schedule": "constant", "progress": False}})


def guidance_options(args) -> dict[str, dict]:
    """``--option sds.schedule=sqrt_anneal`` → ``{"sds": {"schedule": "sqrt_anneal"}}`` (values read as YAML)."""
    options: dict[str, dict] = {}
    for item in args.option:
        target, _, value = item.partition("=")
        name, _, key = target.partition(".")
        options.setdefault(name, {})[key] = yaml.safe_load(value)
    return options


def guidance_train(context, name: str, fake_lr: float):
    train = context.recipe.train
    return train.model_copy(update={"groups": {"fake": GroupConfig(lr=fake_lr)}}) if name == "vsd" else train


def summarise(rows: list[dict], keys) -> list[str]:
    cells = []
    for key in keys:
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        if not values:
            cells.append("–")
            continue
        mean, std = mean_std(values)
        cells.append(f"{mean:.4f} ± {std:.4f}" if key == "chamfer" else f"{mean:.3f} ± {std:.3f}")
    return cells


def study_meshes(args) -> dict:
    results = {}
    for mesh in args.meshes:
        recipe = scene_recipe(args, [mesh])
        started = time.perf_counter()
        context = prepare_scene(recipe, Run(args.work / mesh, recipe))
        table = results.setdefault(mesh, {"prior_seconds": time.perf_counter() - started, "rows": {}})["rows"]
        for seed in args.seeds:
            run = Run(args.work / mesh / f"seed{seed}", recipe)
            table.setdefault("initial state", []).append(context.score("initial state", context.initial(seed)).metrics)
            row = context.reconstruct(run, seed)
            table.setdefault("reconstruction", []).append({**row.metrics, **row.cost})
            for name in args.guidances:
                row, _ = context.distil(run, GUIDANCES.build(name, **guidance_options(args).get(name, {})), name,
                                        seed, guidance_train(context, name, args.fake_lr))
                table.setdefault(name, []).append({**row.metrics, **row.cost})
                print(f"{mesh} seed {seed} {name}: chamfer {row.metrics['chamfer']:.4f} psnr "
                      f"{row.metrics['psnr']:.2f} ({row.cost['seconds']:.0f} s)", flush=True)
    for mesh, entry in results.items():
        print(f"\n{mesh} ({args.prior} prior)")
        print_table(["object", *KEYS], [[name, *summarise(rows, KEYS)] for name, rows in entry["rows"].items()])
    return results


def study_modes(args) -> dict:
    recipe = scene_recipe(args, args.meshes)
    context = prepare_scene(recipe, Run(args.work / "modes", recipe))
    reference = {}
    for k, mesh in enumerate(context.names):
        row = context.reconstruct(Run(args.work / "modes" / "reconstruction", recipe), args.seeds[0], mesh=k)
        reference[mesh] = row.metrics["chamfer"]
    results = {"reconstruction_chamfer": reference, "guidances": {}, "diversity": {}}
    for name in args.guidances:
        runs, shapes = [], []
        for seed in args.seeds:
            row, scene = context.distil(Run(args.work / "modes" / f"seed{seed}", recipe),
                                    GUIDANCES.build(name, **guidance_options(args).get(name, {})), name, seed,
                                    guidance_train(context, name, args.fake_lr))
            shapes.append(surface_points(scene, context.held, context.size).float())
            nearest = row.metrics["object"]
            runs.append({**row.metrics, **row.cost,
                         "blend": row.metrics["chamfer"] > args.blend_factor * reference[nearest]})
            print(f"modes {name} seed {seed}: nearest {nearest} chamfer {row.metrics['chamfer']:.4f} "
                  f"(reconstruction {reference[nearest]:.4f})", flush=True)
        results["guidances"][name] = runs
        pairs = [(a, b) for i, a in enumerate(shapes) for b in shapes[i + 1:] if len(a) and len(b)]
        results["diversity"][name] = mean_std([chamfer_distance(a, b) for a, b in pairs]) if pairs else None
    lines = []
    for name, runs in results["guidances"].items():
        objects = sorted({r["object"] for r in runs if not r["blend"]})
        diversity = results["diversity"][name]
        lines.append([name, str(len(objects)), ", ".join(objects) or "–", f"{sum(r['blend'] for r in runs)}/{len(runs)}",
                      *summarise(runs, ("chamfer", "psnr")),
                      "–" if diversity is None else f"{diversity[0]:.4f} ± {diversity[1]:.4f}"])
    print(f"\nmode seeking over {', '.join(context.names)} ({args.prior} prior; reconstruction Chamfer "
          + ", ".join(f"{m} {c:.4f}" for m, c in reference.items()) + ")")
    print_table(["guidance", "distinct objects", "which", "blends", "chamfer (nearest)", "psnr (nearest)",
                 "diversity (Chamfer between seeds)"], lines)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=["meshes", "modes"], default="meshes")
    parser.add_argument("--prior", choices=["exact", "trained"], default="exact")
    parser.add_argument("--meshes", nargs="+", default=["cow", "elephant"])
    parser.add_argument("--guidances", nargs="+", default=["sds", "ism", "ssd", "csd", "dsd"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--gaussians", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4, help="views rendered per step")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--fake-lr", type=float, default=1e-4, help="VSD's online score learning rate")
    parser.add_argument("--kappa", type=float, default=15.0, help="exact prior's camera kernel width (degrees)")
    parser.add_argument("--prior-steps", type=int, default=2000)
    parser.add_argument("--blend-factor", type=float, default=1.5)
    parser.add_argument("--option", action="append", default=[],
                        help="a guidance option, e.g. sds.schedule=sqrt_anneal (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/distill_score_scenes"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = study_meshes(args) if args.study == "meshes" else study_modes(args)
    out = args.out or Path(f"benchmarks/results/score_scenes_{args.study}_{args.prior}.json")
    write_json(out, {"command": "python benchmarks/score_scenes.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if k not in ("work", "out") and v != []), "results": results})


if __name__ == "__main__":
    main()
