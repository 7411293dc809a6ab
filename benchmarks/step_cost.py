"""Cost of a distillation step relative to a plain student step, per method, and with a cached teacher.

MNIST-1D, ConvNet teacher (64 channels) → ConvNet student (8 channels), batch 100,
Adam; each method's pairs as in its recipe. "kd (cached teacher)" serves the
teacher's logits from a teacher-output cache (valid only for non-augmented data;
the cache refuses other inputs). Timings are medians over repeats of ``--steps``
steps, one torch thread.

    python benchmarks/step_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, write_json

from distill import Distiller, Match
from distill.data import load_dataset
from distill.experiment.recipe import load_recipe
from distill.losses import masked_cross_entropy
from distill.models import build_model
from distill.signals import CachedTeacher, build_teacher_cache
from distill.tasks.classification.run import recipe_pairs

RECIPES = Path(__file__).parents[1] / "recipes" / "methods"


def time_steps(step, batches, repeats: int) -> float:
    """Median milliseconds per step over ``repeats`` passes through ``batches``."""
    for x, y in batches[:10]:
        step(x, y)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for x, y in batches:
            step(x, y)
        times.append((time.perf_counter() - start) / len(batches))
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="batches of 100 per repeat (MNIST-1D has 4,000 training samples)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/step_cost.json"))
    parser.add_argument("--cache-only", action="store_true",
                        help="only the plain / live-teacher KD / cached-teacher KD comparison, interleaved")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_dataset("mnist1d")
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
    batches = [(splits.train.x[i], splits.train.y[i]) for i in order[: args.steps * 100].view(-1, 100)]
    teacher = build_model("convnet", (1, 40), 10, channels=[64, 64, 64]).eval()

    def student():
        torch.manual_seed(0)
        return build_model("convnet", (1, 40), 10, channels=[8, 8, 8])

    def supervised_step():
        model = student()
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step(x, y):
            loss = masked_cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    def distill_step(pairs, task_weight, the_teacher=teacher):
        distiller = Distiller(student(), the_teacher, pairs, task_loss=masked_cross_entropy if task_weight else None,
                              task_weight=task_weight, example_input=batches[0][0])
        opt = torch.optim.Adam(distiller.parameters(), 1e-3)

        def step(x, y):
            out = distiller(x)
            loss = distiller.compute_losses(y, output=out)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    if args.cache_only:
        compare_cache(splits, teacher, batches, supervised_step, distill_step, args)
        return
    base = time_steps(supervised_step(), batches, args.repeats)
    rows, table = [["scratch (plain step)", f"{base:.3f}", "1.00"]], [{"method": "scratch", "ms": base, "ratio": 1.0}]
    methods = sorted(p.stem for p in RECIPES.glob("*.yaml") if p.stem not in ("self_distill", "multi_teacher"))
    for method in [*methods, "self_distill"]:
        recipe = load_recipe(RECIPES / f"{method}.yaml")
        pairs = recipe_pairs(recipe)
        ms = time_steps(distill_step(pairs, recipe.distill.task_weight, "self" if recipe.teacher == "self" else teacher),
                        batches, args.repeats)
        rows.append([method, f"{ms:.3f}", f"{ms / base:.2f}"])
        table.append({"method": method, "ms": ms, "ratio": ms / base})
        print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as folder:
        build_teacher_cache(teacher, splits.train, Path(folder), taps=["output"])
        cached = CachedTeacher(Path(folder))
        kd = {("output", "output"): Match("kd", options={"temperature": 4.0, "alpha": 0.9})}
        ms = time_steps(distill_step(kd, 0.0, cached), batches, args.repeats)
    rows.append(["kd (cached teacher)", f"{ms:.3f}", f"{ms / base:.2f}"])
    table.append({"method": "kd (cached teacher)", "ms": ms, "ratio": ms / base})
    print_table(["method", "ms / step", "× plain step"], rows)
    write_json(args.out, {"command": f"python benchmarks/step_cost.py --steps {args.steps} --repeats {args.repeats}", "rows": table})


def compare_cache(splits, teacher, batches, supervised_step, distill_step, args) -> None:
    """Plain step, KD with the live teacher and KD with the cached teacher, timed in turn ``repeats``
    times (one pass of ``--steps`` steps each), so drift of the machine hits all three alike."""
    kd = {("output", "output"): Match("kd", options={"temperature": 4.0, "alpha": 0.9})}
    with tempfile.TemporaryDirectory() as folder:
        build_teacher_cache(teacher, splits.train, Path(folder), taps=["output"])
        steps = {"scratch (plain step)": supervised_step(), "kd (live teacher)": distill_step(kd, 0.0),
                 "kd (cached teacher)": distill_step(kd, 0.0, CachedTeacher(Path(folder)))}
        times = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, step in steps.items():
                times[name].append(time_steps(step, batches, 1))
    base = statistics.median(times["scratch (plain step)"])
    rows, table = [], []
    for name, values in times.items():
        ms = statistics.median(values)
        rows.append([name, f"{ms:.3f}", f"{ms / base:.2f}"])
        table.append({"method": name, "ms": ms, "ratio": ms / base, "ms_per_repeat": values})
    print_table(["step", "ms / step (median)", "× plain step"], rows)
    write_json(args.out, {"command": f"python benchmarks/step_cost.py --cache-only --steps {args.steps} "
                                     f"--repeats {args.repeats}", "rows": table})


if __name__ == "__main__":
    main()
