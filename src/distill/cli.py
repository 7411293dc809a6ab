"""Command line: ``distill run | eval | export | list``."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from rich.console import Console

from distill.errors import DistillError

QUICKSTART = "quickstart"


def bundled_recipe(name: str) -> Path:
    """Path of a recipe shipped inside the package (``distill/recipes/NAME.yaml``)."""
    return Path(str(resources.files("distill") / "recipes" / f"{name}.yaml"))


def _run_steps(source: Path, args: argparse.Namespace, console: Console) -> int:
    from distill.steps.experiment import run_steps_recipe
    from distill.steps.recipe import load_steps_recipe
    from distill.steps.report import print_steps_table

    recipe = load_steps_recipe(source, args.set)
    if args.no_progress:
        recipe.teacher.train.progress = recipe.train.progress = recipe.evaluate.classifier.train.progress = False
    run_dir = Path(args.out) if args.out else Path("runs") / recipe.name
    console.print(f"[bold]distill run[/bold] {source} → {run_dir}")
    outcome = run_steps_recipe(recipe, run_dir, resume=args.resume)
    print_steps_table(outcome["rows"], outcome["results"]["floor"], recipe.name, console)
    console.print(f"report: {run_dir / 'report.md'}   numbers: {run_dir / 'results.json'}")
    return 0


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from distill.experiment import run_recipe
    from distill.recipe import load_recipe, train_configs
    from distill.report import print_table, write_report
    from distill.steps.recipe import is_steps_recipe

    source = Path(args.recipe) if args.recipe else bundled_recipe(QUICKSTART)
    if is_steps_recipe(source, args.set):
        return _run_steps(source, args, console)
    recipe = load_recipe(source, args.set)
    for config in train_configs(recipe) if args.no_progress else []:
        config.progress = False
    run_dir = Path(args.out) if args.out else Path("runs") / recipe.name
    console.print(f"[bold]distill run[/bold] {source} → {run_dir}")
    outcome = run_recipe(recipe, run_dir, resume=args.resume)
    print_table(outcome["rows"], title=recipe.name, console=console)
    report = write_report(outcome["rows"], run_dir, recipe.name)
    console.print(f"report: {report}   numbers: {run_dir / 'results.json'}")
    return 0


def _load_run_student(run_dir: Path, weights: Path | None):
    from distill.engine.checkpoint import load_weights_file
    from distill.experiment import build_student, load_student_data
    from distill.recipe import load_recipe

    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.exists():
        raise DistillError(f"{run_dir} is not a distill run folder (no recipe.yaml); pass the folder `distill run` wrote.")
    recipe = load_recipe(recipe_file)
    splits = load_student_data(recipe)
    student = build_student(recipe, splits)
    try:
        student.load_state_dict(load_weights_file(weights or run_dir / "student.safetensors"))
    except RuntimeError as err:
        raise DistillError(f"the weights do not fit the recipe's student ({recipe.student.model}): {err}") from None
    return student.eval(), splits


def _cmd_eval(args: argparse.Namespace, console: Console) -> int:
    from distill.tasks.classification import evaluate_classifier

    student, splits = _load_run_student(Path(args.run_dir), Path(args.weights) if args.weights else None)
    metrics = evaluate_classifier(student, splits.test)
    console.print(f"test accuracy {100 * metrics['acc']:.2f} %  (cross-entropy {metrics['loss']:.4f}, {len(splits.test)} samples)")
    return 0


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    from distill.export import export_model

    run_dir = Path(args.run_dir)
    student, splits = _load_run_student(run_dir, Path(args.weights) if args.weights else None)
    suffix = ".pt" if args.format == "torchscript" else ".onnx"
    out = Path(args.out) if args.out else run_dir / f"student{suffix}"
    example = splits.test[0][0].unsqueeze(0)
    export_model(student, example, out, args.format)
    console.print(f"exported the student to {out} ({args.format})")
    return 0


def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from distill.data import DATASETS
    from distill.losses import LOSSES
    from distill.models import MODELS
    from distill.steps.methods import STEP_METHODS
    from distill.steps.nets import DENOISERS
    from distill.steps.toys import TOYS

    registries = {"methods": LOSSES, "step-methods": STEP_METHODS, "datasets": DATASETS, "toys": TOYS,
                  "models": MODELS, "denoisers": DENOISERS}
    wanted = [args.what] if args.what else list(registries)
    for what in wanted:
        table = Table(title=what)
        table.add_column("name")
        table.add_column("description")
        registry = registries[what]
        for name in registry.names():
            table.add_row(name, registry.describe(name))
        console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``distill`` command and its sub-commands."""
    parser = argparse.ArgumentParser(prog="distill", description="Knowledge distillation in all its forms.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a recipe (default: the built-in MNIST-1D quick-start)")
    run.add_argument("recipe", nargs="?", help="YAML recipe; omit for the quick-start")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field, e.g. train.lr=0.01")
    run.add_argument("--out", help="run folder (default runs/<recipe name>)")
    run.add_argument("--resume", action="store_true", help="continue each phase from its last checkpoint")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    for name, helptext in (("eval", "evaluate a run's student on the test set"), ("export", "export a run's student")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("run_dir", help="folder written by `distill run`")
        cmd.add_argument("--weights", help="a .safetensors file or checkpoint folder instead of the run's student")
        if name == "export":
            cmd.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
            cmd.add_argument("--out", help="output file")
    listing = sub.add_parser("list", help="list registered methods, datasets and models")
    listing.add_argument("what", nargs="?", choices=["methods", "step-methods", "datasets", "toys", "models", "denoisers"])
    return parser


COMMANDS = {"run": _cmd_run, "eval": _cmd_eval, "export": _cmd_export, "list": _cmd_list}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``distill`` command; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return COMMANDS[args.command](args, console)
    except DistillError as err:
        print(f"error: {err}", file=sys.stderr)  # unwrapped, so it can be grepped and copied
        return 2


if __name__ == "__main__":
    sys.exit(main())
