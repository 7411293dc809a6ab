"""Score distillation into 2-D particles: SDS and VSD under a trained flow prior of 8 Gaussians.

A flow-matching prior (the steps family's MLP teacher) is trained once on 20,000 points
of 8 Gaussians; each guidance then moves ``--particles`` particles from N(0, I) for
``--steps`` engine steps. Reported beside the same statistics of held-out real data:
mean distance to the nearest mode, mean per-mode spread, modes covered, sliced W2 and
MMD² to held-out points (with the real-vs-real noise floor). Mean ± std over seeds.

    python benchmarks/score_particles.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import mean_std, print_table, write_json

from distill.data.generative import load_generative_data
from distill.data.toys import EIGHT_GAUSSIAN_CENTRES
from distill.diffusion import Denoiser, DenoisingObjective, build_denoiser, build_process
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.metrics import mmd_rbf, sliced_wasserstein
from distill.tasks.score import GUIDANCES, ParticlesObjective, mode_statistics


def train_prior(splits, work: Path, steps: int) -> Denoiser:
    torch.manual_seed(0)
    prior = Denoiser(build_denoiser("mlp", (2,)), build_process("flow"), "velocity")
    config = TrainConfig(steps=steps, batch_size=256, lr=1e-3, schedule="cosine", progress=False)
    train(DenoisingObjective(prior), splits.train, config, work / "prior")
    return prior.eval().requires_grad_(False)


def statistics(points: torch.Tensor, held_out: torch.Tensor) -> dict[str, float]:
    return {**mode_statistics(points, EIGHT_GAUSSIAN_CENTRES), "swd": sliced_wasserstein(held_out, points),
            "mmd": mmd_rbf(held_out, points)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--particles", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--prior-steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=0.01, help="particles' Adam learning rate")
    parser.add_argument("--fake-lr", type=float, default=1e-3, help="VSD's online score learning rate")
    parser.add_argument("--work", type=Path, default=Path("/tmp/distill_score_particles"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/score_particles.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_generative_data("8gaussians", {"n_train": 20_000, "n_test": 5_000, "seed": 0})
    started = time.perf_counter()
    prior = train_prior(splits, args.work, args.prior_steps)
    prior_seconds = time.perf_counter() - started
    test = splits.test.x
    n = args.particles
    results = {"data (held-out draw)": [], "sds": [], "vsd": []}
    for seed in args.seeds:
        draw = torch.randperm(len(splits.train.x), generator=torch.Generator().manual_seed(seed))[:n]
        results["data (held-out draw)"].append(statistics(splits.train.x[draw], test[:n]))
        for name in ("sds", "vsd"):
            torch.manual_seed(seed)
            objective = ParticlesObjective(GUIDANCES.build(name), prior, torch.randn(n, 2), args.steps)
            groups = {"particles": {"lr": args.lr}, **({"fake": {"lr": args.fake_lr}} if name == "vsd" else {})}
            config = TrainConfig(steps=args.steps, batch_size=256, lr=args.lr, seed=seed, progress=False, groups=groups)
            begun = time.perf_counter()
            train(objective, ParticlesObjective.dataset(n), config, args.work / f"{name}_seed{seed}")
            row = statistics(objective.particles.detach(), test[:n])
            row["seconds"] = time.perf_counter() - begun
            results[name].append(row)
            print(f"seed {seed} {name}: {row}", flush=True)
    keys = ("mode_distance", "mode_spread", "modes_covered", "swd", "mmd")
    table = []
    for name, rows in results.items():
        cells = [name]
        for key in keys:
            mean, std = mean_std([r[key] for r in rows])
            cells.append(f"{mean:.3f} ± {std:.3f}" if key != "mmd" else f"{mean:.4f} ± {std:.4f}")
        table.append(cells)
    print_table(["particles", "dist. to nearest mode", "per-mode spread", "modes covered", "sliced W2 (floor: data row)",
                 "MMD² (floor: data row)"], table)
    write_json(args.out, {"command": f"python benchmarks/score_particles.py --seeds {' '.join(map(str, args.seeds))} "
                                     f"--particles {n} --steps {args.steps}", "prior_seconds": prior_seconds,
                          "results": results})


if __name__ == "__main__":
    main()
