"""What the Distiller and the training engine add to a plain PyTorch distillation step.

MNIST-1D, a ConvNet teacher (64 channels, random weights unless ``--teacher-steps``:
its accuracy does not change the cost) and the quick-start's MLP student (40→100→100→10),
batch 100, Adam, KD (T = 4, 0.9 soft + 0.1 CE), one torch thread. Rows:

- ``hand-written``: plain PyTorch: batches by indexing the in-memory tensors with a
  random permutation per epoch, teacher forward under ``no_grad``, the KD loss written out,
  ``zero_grad`` / ``backward`` / ``Adam.step``;
- ``Distiller in the loop``: the same loop, ``distiller(x)`` and ``compute_losses(y)``;
- ``DistillObjective in the loop``: the same loop around the classification objective
  the engine trains (``objective({"x", "y"})["loss"]``; it also reports batch accuracy);
- ``engine train()``: ``distill.engine.trainer.train(DistillObjective(distiller), ...)``
  with evaluation, progress bar and periodic checkpoints off (one checkpoint at the end),
  logging every 50 steps. Its wall ms/step is the engine's own loop time
  (``TrainResult.seconds``); the set-up before the loop is reported beside it.

Wall time and process CPU time are both reported: on a shared machine the CPU time
leaves out the time the process waited for a core.

Every row runs ``--steps`` steps from the same initial weights; the rows are interleaved
over ``--repeats`` repeats (mean ± std over repeats). ``--profile FILE`` instead runs
the engine row once under cProfile and prints where its time goes.

    python benchmarks/engine_overhead.py --steps 2000
    python benchmarks/engine_overhead.py --steps 1000 --profile /tmp/engine.prof
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import mean_std, print_table, write_json

from distill import Distiller, Match
from distill.data import load_dataset
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.models import build_model
from distill.tasks.classification.objectives import DistillObjective

BATCH, LR, TEMPERATURE, ALPHA = 100, 1e-3, 4.0, 0.9
ROWS = ["hand-written", "Distiller in the loop", "DistillObjective in the loop", "engine train()"]


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Hinton et al. (2015) written out: ``alpha·T²·KL(teacher_T ‖ student_T) + (1 − alpha)·CE``."""
    log_s = F.log_softmax(student / TEMPERATURE, dim=-1)
    log_t = F.log_softmax(teacher / TEMPERATURE, dim=-1)
    soft = TEMPERATURE**2 * (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    return ALPHA * soft + (1 - ALPHA) * F.cross_entropy(student, y)


class Setup:
    """Data, teacher and a factory of identically initialised students."""

    def __init__(self, teacher_steps: int) -> None:
        self.splits = load_dataset("mnist1d")
        self.x, self.y = self.splits.train.x, self.splits.train.y
        torch.manual_seed(0)
        self.teacher = build_model("convnet", self.splits.input_shape, self.splits.num_classes, channels=[64, 64, 64])
        if teacher_steps:
            self._fit_teacher(teacher_steps)
        self.teacher.eval().requires_grad_(False)

    def _fit_teacher(self, steps: int) -> None:
        optimizer = torch.optim.Adam(self.teacher.parameters(), 3e-3)
        for x, y in self.batches(steps, seed=1):
            loss = F.cross_entropy(self.teacher(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            acc = (self.teacher(self.splits.test.x).argmax(-1) == self.splits.test.y).float().mean()
        print(f"teacher trained {steps} steps: {100 * acc:.1f} % test accuracy", flush=True)

    def student(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model("mlp", self.splits.input_shape, self.splits.num_classes, hidden=[100, 100])

    def distiller(self) -> Distiller:
        pairs = {("output", "output"): Match("kd", options={"temperature": TEMPERATURE, "alpha": ALPHA})}
        return Distiller(self.student(), self.teacher, pairs, example_input=self.x[:2])

    def batches(self, steps: int, seed: int = 0):
        """``steps`` batches drawn by indexing the tensors with a fresh permutation per epoch."""
        generator = torch.Generator().manual_seed(seed)
        done, per_epoch = 0, len(self.y) // BATCH
        while done < steps:
            order = torch.randperm(len(self.y), generator=generator)
            for i in range(min(per_epoch, steps - done)):
                idx = order[i * BATCH:(i + 1) * BATCH]
                yield self.x[idx], self.y[idx]
            done += per_epoch


@dataclass
class Timing:
    """One run of ``steps`` steps: wall and CPU seconds of the loop, and the first step's loss."""

    wall: float
    cpu: float
    first_loss: float | None = None
    setup_wall: float = 0.0


class Clock:
    """Wall (``perf_counter``) and process CPU time (``process_time``) together: on a shared machine
    CPU time leaves out the time this process waited for a core."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def hand_written(setup: Setup, steps: int) -> Timing:
    student, teacher = setup.student(), setup.teacher
    optimizer = torch.optim.Adam(student.parameters(), LR)
    first = None
    with Clock() as clock:
        for x, y in setup.batches(steps):
            with torch.no_grad():
                t = teacher(x)
            loss = kd_loss(student(x), t, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            first = float(loss.detach()) if first is None else first
    return Timing(clock.wall, clock.cpu, first)


def distiller_loop(setup: Setup, steps: int) -> Timing:
    distiller = setup.distiller()
    optimizer = torch.optim.Adam([p for p in distiller.parameters() if p.requires_grad], LR)
    distiller.train()
    first = None
    with Clock() as clock:
        for x, y in setup.batches(steps):
            distiller(x)
            loss = distiller.compute_losses(y)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            first = float(loss.detach()) if first is None else first
    distiller.export()
    return Timing(clock.wall, clock.cpu, first)


def objective_loop(setup: Setup, steps: int) -> Timing:
    objective = DistillObjective(setup.distiller())
    optimizer = torch.optim.Adam([p for p in objective.parameters() if p.requires_grad], LR)
    objective.train()
    first = None
    with Clock() as clock:
        for x, y in setup.batches(steps):
            loss = objective({"x": x, "y": y})["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            first = float(loss.detach()) if first is None else first
    objective.distiller.export()
    return Timing(clock.wall, clock.cpu, first)


def engine_config(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=BATCH, optimizer="adam", lr=LR, progress=False, log_every=50,
                       eval_every=0, checkpoint_every=0, keep_checkpoints=1, tensorboard=False)


def engine(setup: Setup, steps: int) -> Timing:
    """Wall time of the engine's own loop (``TrainResult.seconds``) and of its set-up before the loop;
    CPU time of the whole ``train()`` call (its set-up is a few ms)."""
    objective = DistillObjective(setup.distiller())
    with tempfile.TemporaryDirectory() as run_dir, Clock() as clock:
        result = train(objective, setup.splits.train, engine_config(steps), Path(run_dir), description="overhead")
    objective.distiller.export()
    assert result.steps == steps, result.steps
    return Timing(result.seconds, clock.cpu, None, clock.wall - result.seconds)


def profile(setup: Setup, steps: int, out: Path, top: int) -> None:
    objective = DistillObjective(setup.distiller())
    with tempfile.TemporaryDirectory() as run_dir:
        profiler = cProfile.Profile()
        profiler.enable()
        result = train(objective, setup.splits.train, engine_config(steps), Path(run_dir), description="overhead")
        profiler.disable()
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(out))
    print(f"engine loop {1000 * result.seconds / steps:.3f} ms/step under cProfile ({steps} steps); stats in {out}")
    for key in ("cumulative", "tottime"):
        print(f"\n--- sorted by {key} ---")
        pstats.Stats(str(out)).strip_dirs().sort_stats(key).print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--teacher-steps", type=int, default=0, help="train the teacher briefly first (0: random)")
    parser.add_argument("--profile", type=Path, help="run the engine row once under cProfile, write the stats here")
    parser.add_argument("--top", type=int, default=40, help="functions shown per profile listing")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/engine_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = Setup(args.teacher_steps)
    hand_written(setup, 100)  # warm-up: allocator, kernels, first-call costs (the first optimizer imports dynamo)
    if args.profile:
        profile(setup, args.steps, args.profile, args.top)
        return

    loops = {"hand-written": hand_written, "Distiller in the loop": distiller_loop,
             "DistillObjective in the loop": objective_loop, "engine train()": engine}
    timings: dict[str, list[Timing]] = {row: [] for row in ROWS}
    for repeat in range(args.repeats):
        for row in ROWS:
            timing = loops[row](setup, args.steps)
            timings[row].append(timing)
            print(f"repeat {repeat} {row:30s} {1000 * timing.wall / args.steps:.3f} ms/step wall, "
                  f"{1000 * timing.cpu / args.steps:.3f} CPU", flush=True)
    first_losses = {row: t[0].first_loss for row, t in timings.items() if t[0].first_loss is not None}
    same = max(first_losses.values()) - min(first_losses.values()) < 1e-4
    print("first-step loss (same weights, same batch): "
          + ", ".join(f"{k} {v:.5f}" for k, v in first_losses.items()) + ("" if same else "  DIFFERENT"))

    def per_step(row: str, kind: str) -> list[float]:
        return [1000 * getattr(t, kind) / args.steps for t in timings[row]]

    base = {kind: mean_std(per_step("hand-written", kind))[0] for kind in ("wall", "cpu")}
    rows, table = [], []
    for row in ROWS:
        (wall, wall_std), (cpu, cpu_std) = mean_std(per_step(row, "wall")), mean_std(per_step(row, "cpu"))
        rows.append([row, f"{wall:.3f} ± {wall_std:.3f}", f"{wall / base['wall']:.2f}",
                     f"{1000 * (wall - base['wall']):+.0f}", f"{cpu:.3f} ± {cpu_std:.3f}", f"{cpu / base['cpu']:.2f}",
                     f"{1000 * (cpu - base['cpu']):+.0f}"])
        table.append({"row": row, "ms_per_step_mean": wall, "ms_per_step_std": wall_std,
                      "ms_per_step": per_step(row, "wall"), "ratio": wall / base["wall"],
                      "extra_us_per_step": 1000 * (wall - base["wall"]),
                      "cpu_ms_per_step_mean": cpu, "cpu_ms_per_step_std": cpu_std, "cpu_ms_per_step": per_step(row, "cpu"),
                      "cpu_ratio": cpu / base["cpu"], "cpu_extra_us_per_step": 1000 * (cpu - base["cpu"])})
    print_table(["loop", "ms / step (wall)", "× hand-written", "µs / step extra",
                 "CPU ms / step", "× hand-written (CPU)", "µs / step extra (CPU)"], rows)
    before = mean_std([t.setup_wall for t in timings["engine train()"]])
    print(f"engine set-up before its loop (Accelerator, DataLoader, optimizers): {before[0]:.3f} ± {before[1]:.3f} s")
    write_json(args.out, {
        "command": f"python benchmarks/engine_overhead.py --steps {args.steps} --repeats {args.repeats}"
                   + (f" --teacher-steps {args.teacher_steps}" if args.teacher_steps else "")
                   + (f" --threads {args.threads}" if args.threads != 1 else ""),
        "setup": {"data": "mnist1d", "teacher": "convnet channels [64, 64, 64]", "student": "mlp hidden [100, 100]",
                  "batch_size": BATCH, "optimizer": f"adam lr {LR}", "loss": f"kd T={TEMPERATURE} alpha={ALPHA}",
                  "teacher_steps": args.teacher_steps, "steps": args.steps, "repeats": args.repeats},
        "rows": table, "engine_setup_seconds": {"mean": before[0], "std": before[1]},
        "first_step_loss": first_losses,
    })


if __name__ == "__main__":
    main()
