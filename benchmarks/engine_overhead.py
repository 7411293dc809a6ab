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

Every row runs ``--steps`` steps from the same initial weights; the rows are interleaved
over ``--repeats`` repeats (mean ± std over repeats); wall and process CPU time are both
reported. On a shared or throttled machine whole runs drift by more than the overheads
measured here; ``--paired`` then times every step on its own instead: the engine's
``train()`` runs ``--steps`` steps and, after each of its optimizer steps (the objective's
``after_optimizer_step``), one step of each hand-written loop runs, in rotating order, so
slow and fast moments of the machine hit every row alike (medians of per-step times).
``--profile FILE`` runs the engine row once under cProfile and prints where its time goes.

    python benchmarks/engine_overhead.py --steps 2000
    python benchmarks/engine_overhead.py --steps 2000 --paired
    python benchmarks/engine_overhead.py --steps 1000 --profile /tmp/engine.prof
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
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
        """A Distiller on its own copy of the teacher (its hooks are on that copy only)."""
        pairs = {("output", "output"): Match("kd", options={"temperature": TEMPERATURE, "alpha": ALPHA})}
        return Distiller(self.student(), copy.deepcopy(self.teacher), pairs, example_input=self.x[:2])

    def batches(self, steps: int = 10**12, seed: int = 0):
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
    """Wall (``perf_counter``) and process CPU time (``process_time``) together."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


Steps = Iterator[torch.Tensor]  # one training step per next(); yields the step's (detached) loss


def hand_written_steps(setup: Setup) -> Steps:
    student, teacher = setup.student(), copy.deepcopy(setup.teacher)
    optimizer = torch.optim.Adam(student.parameters(), LR)
    for x, y in setup.batches():
        with torch.no_grad():
            t = teacher(x)
        loss = kd_loss(student(x), t, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        yield loss.detach()


def distiller_steps(setup: Setup) -> Steps:
    distiller = setup.distiller()
    optimizer = torch.optim.Adam([p for p in distiller.parameters() if p.requires_grad], LR)
    distiller.train()
    try:
        for x, y in setup.batches():
            distiller(x)
            loss = distiller.compute_losses(y)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            yield loss.detach()
    finally:
        distiller.export()


def objective_steps(setup: Setup) -> Steps:
    objective = DistillObjective(setup.distiller())
    optimizer = torch.optim.Adam([p for p in objective.parameters() if p.requires_grad], LR)
    objective.train()
    try:
        for x, y in setup.batches():
            loss = objective({"x": x, "y": y})["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            yield loss.detach()
    finally:
        objective.distiller.export()


HAND_LOOPS: dict[str, Callable[[Setup], Steps]] = {
    "hand-written": hand_written_steps, "Distiller in the loop": distiller_steps,
    "DistillObjective in the loop": objective_steps}


def run_loop(make: Callable[[Setup], Steps], setup: Setup, steps: int) -> Timing:
    loop = make(setup)  # builds the models; its first next() starts the loop
    with Clock() as clock:
        first = float(next(loop))
        for _ in range(steps - 1):
            next(loop)
    loop.close()
    return Timing(clock.wall, clock.cpu, first)


def engine_config(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=BATCH, optimizer="adam", lr=LR, progress=False, log_every=50,
                       eval_every=0, checkpoint_every=0, keep_checkpoints=1, tensorboard=False)


def engine(setup: Setup, steps: int, objective: DistillObjective | None = None) -> Timing:
    """Wall time of the engine's own loop (``TrainResult.seconds``) and of its set-up before the loop;
    CPU time of the whole ``train()`` call (its set-up is a few ms)."""
    objective = objective or DistillObjective(setup.distiller())
    with tempfile.TemporaryDirectory() as run_dir, Clock() as clock:
        result = train(objective, setup.splits.train, engine_config(steps), Path(run_dir), description="overhead")
    objective.distiller.export()
    assert result.steps == steps, result.steps
    return Timing(result.seconds, clock.cpu, None, clock.wall - result.seconds)


class PairedDriver(DistillObjective):
    """The engine's objective; after each optimizer step it times one step of every hand-written loop."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup.distiller())
        self.loops = {name: make(setup) for name, make in HAND_LOOPS.items()}
        self.seconds: dict[str, list[float]] = {row: [] for row in ROWS}
        self.last: float | None = None

    def after_optimizer_step(self, step: int) -> None:
        now = time.perf_counter()
        if self.last is not None:  # one whole engine step: from the end of this hook to its next call
            self.seconds["engine train()"].append(now - self.last)
        names = list(self.loops)
        for name in names[step % len(names):] + names[:step % len(names)]:
            start = time.perf_counter()
            next(self.loops[name])
            self.seconds[name].append(time.perf_counter() - start)
        self.last = time.perf_counter()

    def close(self) -> None:
        for loop in self.loops.values():
            loop.close()


def paired(setup: Setup, steps: int) -> dict:
    driver = PairedDriver(setup)
    engine(setup, steps, driver)
    driver.close()
    base = statistics.median(driver.seconds["hand-written"])
    rows, table = [], []
    for row in ROWS:
        values = [1000 * s for s in driver.seconds[row]]
        median, q1, q3 = statistics.median(values), *statistics.quantiles(values, n=4)[::2]
        rows.append([row, f"{median:.3f}", f"{q1:.3f} – {q3:.3f}", f"{median / (1000 * base):.2f}",
                     f"{1000 * (median - 1000 * base):+.0f}"])
        table.append({"row": row, "ms_per_step_median": median, "ms_per_step_quartiles": [q1, q3],
                      "ratio": median / (1000 * base), "extra_us_per_step": 1000 * (median - 1000 * base),
                      "steps_timed": len(values)})
    print_table(["loop (paired, per step)", "ms / step (median)", "quartiles", "× hand-written", "µs / step extra"], rows)
    return {"rows": table}


def profile(setup: Setup, steps: int, out: Path, top: int) -> None:
    objective = DistillObjective(setup.distiller())
    with tempfile.TemporaryDirectory() as run_dir:
        profiler = cProfile.Profile()
        profiler.enable()
        result = train(objective, setup.splits.train, engine_config(steps), Path(run_dir), description="overhead")
        profiler.disable()
    objective.distiller.export()
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(out))
    print(f"engine loop {1000 * result.seconds / steps:.3f} ms/step under cProfile ({steps} steps); stats in {out}")
    for key in ("cumulative", "tottime"):
        print(f"\n--- sorted by {key} ---")
        pstats.Stats(str(out)).strip_dirs().sort_stats(key).print_stats(top)


def repeated(setup: Setup, steps: int, repeats: int) -> dict:
    timings: dict[str, list[Timing]] = {row: [] for row in ROWS}
    for repeat in range(repeats):
        for row in ROWS:
            timing = engine(setup, steps) if row == "engine train()" else run_loop(HAND_LOOPS[row], setup, steps)
            timings[row].append(timing)
            print(f"repeat {repeat} {row:30s} {1000 * timing.wall / steps:.3f} ms/step wall, "
                  f"{1000 * timing.cpu / steps:.3f} CPU", flush=True)
    first_losses = {row: t[0].first_loss for row, t in timings.items() if t[0].first_loss is not None}
    same = max(first_losses.values()) - min(first_losses.values()) < 1e-4
    print("first-step loss (same weights, same batch): "
          + ", ".join(f"{k} {v:.5f}" for k, v in first_losses.items()) + ("" if same else "  DIFFERENT"))

    def per_step(row: str, kind: str) -> list[float]:
        return [1000 * getattr(t, kind) / steps for t in timings[row]]

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
    return {"rows": table, "engine_setup_seconds": {"mean": before[0], "std": before[1]}, "first_step_loss": first_losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paired", action="store_true", help="also time every step on its own, rows interleaved step by step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--teacher-steps", type=int, default=0, help="train the teacher briefly first (0: random)")
    parser.add_argument("--profile", type=Path, help="run the engine row once under cProfile, write the stats here")
    parser.add_argument("--top", type=int, default=40, help="functions shown per profile listing")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/engine_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = Setup(args.teacher_steps)
    run_loop(hand_written_steps, setup, 100)  # warm-up: allocator, kernels, first-call costs (the first optimizer imports dynamo)
    if args.profile:
        profile(setup, args.steps, args.profile, args.top)
        return
    results = repeated(setup, args.steps, args.repeats)
    if args.paired:
        results["paired"] = paired(setup, args.steps)
    write_json(args.out, {
        "command": f"python benchmarks/engine_overhead.py --steps {args.steps} --repeats {args.repeats}"
                   + (" --paired" if args.paired else "")
                   + (f" --teacher-steps {args.teacher_steps}" if args.teacher_steps else "")
                   + (f" --threads {args.threads}" if args.threads != 1 else ""),
        "setup": {"data": "mnist1d", "teacher": "convnet channels [64, 64, 64]", "student": "mlp hidden [100, 100]",
                  "batch_size": BATCH, "optimizer": f"adam lr {LR}", "loss": f"kd T={TEMPERATURE} alpha={ALPHA}",
                  "teacher_steps": args.teacher_steps, "steps": args.steps, "repeats": args.repeats},
        **results,
    })


if __name__ == "__main__":
    main()
