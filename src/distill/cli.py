"""Command line: ``distill run | tune | eval | export | list``; every family is found through ``TASKS``."""

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


def _set_threads(threads: int) -> None:
    import torch

    if threads < 0:
        raise DistillError(f"--threads must be a positive number of threads, got {threads}.")
    if threads or not torch.cuda.is_available():
        torch.set_num_threads(threads or 1)


def _load(source: Path, args: argparse.Namespace):
    """The recipe with the ``--set`` overrides, its progress bars hidden with ``--no-progress``."""
    from distill.experiment import load_recipe
    from distill.experiment.recipe import train_configs

    recipe = load_recipe(source, args.set)
    for config in train_configs(recipe) if args.no_progress else []:
        config.progress = False
    return recipe


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from distill.experiment.launch import run

    _set_threads(args.threads)
    source = Path(args.recipe) if args.recipe else bundled_recipe(QUICKSTART)
    recipe = _load(source, args)
    folder = Path(args.out) if args.out else Path("runs") / recipe.name
    console.print(f"[bold]distill run[/bold] {source} ({recipe.task}) → {folder}")
    table = run(recipe, folder, resume=args.resume)
    table.print(console)
    console.print(f"report: {folder / 'report.md'}   numbers: {folder / 'results.json'}")
    return 0


def _cmd_tune(args: argparse.Namespace, console: Console) -> int:
    from distill.experiment.tune import parse_budget, tune, tune_folder

    _set_threads(args.threads)
    budget = parse_budget(args.budget) if args.budget is not None else None
    recipe = _load(Path(args.recipe), args)
    folder = tune_folder(recipe, args.out)
    console.print(f"[bold]distill tune[/bold] {args.recipe} ({recipe.task}) → {folder}")
    outcome = tune(recipe, budget, args.trials, folder, resume=args.resume)
    outcome.table.print(console)
    console.print(f"report: {folder / 'report.md'}   trials: {folder / 'trials.csv'}   "
                  f"chosen recipe: {folder / 'best_recipe.yaml'}")
    return 0


def _cmd_eval(args: argparse.Namespace, console: Console) -> int:
    from distill.experiment import get_task, load_run_recipe

    recipe = load_run_recipe(Path(args.run_dir))
    weights = Path(args.weights) if args.weights else None
    task = get_task(recipe.task)
    options = task.parse_options("eval", args.task_options)
    task.evaluate(Path(args.run_dir), recipe, weights, **options).print(console)
    return 0


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    from distill.experiment import get_task, load_run_recipe

    recipe = load_run_recipe(Path(args.run_dir))
    weights = Path(args.weights) if args.weights else None
    out = Path(args.out) if args.out else None
    task = get_task(recipe.task)
    options = task.parse_options("export", args.task_options)
    for path in task.export(Path(args.run_dir), recipe, args.format, weights, out, **options):
        console.print(f"exported {path}")  # its suffix names the format (.pt, .onnx, or a scene file)
    return 0


def _registries() -> dict:
    from distill.data import DATASETS
    from distill.data.toys import TOYS
    from distill.diffusion.nets import DENOISERS
    from distill.experiment import TASKS, all_tasks
    from distill.models import MODELS
    from distill.scenes import REPRESENTATIONS

    tasks = all_tasks()
    shared = {"tasks": TASKS, "datasets": DATASETS, "toys": TOYS, "models": MODELS, "denoisers": DENOISERS,
              "representations": REPRESENTATIONS}
    families = {f"{name}-methods": task.methods for name, task in tasks.items() if task.methods}
    listings = {f"{name}-{key}": registry for name, task in tasks.items() for key, registry in task.listings.items()}
    return {**shared, **families, **listings}


def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    registries = _registries()
    if args.what and args.what not in registries:
        raise DistillError(f"distill list: nothing called {args.what!r}; choose one of {', '.join(registries)}.")
    for what in [args.what] if args.what else list(registries):
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
    run.add_argument("--resume", action="store_true", help="continue each stage from its last checkpoint")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--threads", type=int, default=0, metavar="N",
                     help="torch CPU threads per process (default: 1 on a CPU-only machine, where the small models "
                          "of the recipes run faster on one thread per process than on several)")
    tune = sub.add_parser("tune", help="search a recipe's method and knobs within a time budget",
                          description="Try distillation methods and their knobs on a validation split carved "
                                      "from the training data, beside scratch; write the chosen setting as a "
                                      "recipe, then train it on the whole training set and score it on the test "
                                      "split once.")
    tune.add_argument("recipe", help="YAML recipe (task: classification); its search: section narrows the space")
    tune.add_argument("--budget", metavar="TIME", help="wall-clock time for the trials: 90s, 20m, 1h, 1h30m "
                                                      "(default: the recipe's search.budget)")
    tune.add_argument("--trials", type=int, metavar="N", help="at most N trials (default: the recipe's search.trials, "
                                                              "else as many as the budget allows)")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    tune.add_argument("--out", help="output folder (default runs/<recipe name>-tune)")
    tune.add_argument("--resume", action="store_true", help="continue the search stored in the output folder")
    tune.add_argument("--no-progress", action="store_true", help="hide progress bars")
    tune.add_argument("--threads", type=int, default=0, metavar="N", help="torch CPU threads (as for run)")
    for name, helptext in (("eval", "evaluate a run's student"), ("export", "export a run's student")):
        cmd = sub.add_parser(name, help=helptext,
                             epilog="A family may take options of its own after these; `distill list tasks` names them.")
        cmd.add_argument("run_dir", help="folder written by `distill run`")
        cmd.add_argument("--weights", help="use this instead of the run's student (a .safetensors file or checkpoint "
                                           "folder; a model folder or a synthetic set, by family)")
        if name == "export":
            cmd.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
            cmd.add_argument("--out", help="output file (steps runs: the stem of one file per step count)")
    listing = sub.add_parser("list", help="list tasks, each task's methods, datasets and models")
    listing.add_argument("what", nargs="?", help="one listing, e.g. tasks, classification-methods, steps-methods")
    return parser


COMMANDS = {"run": _cmd_run, "tune": _cmd_tune, "eval": _cmd_eval, "export": _cmd_export, "list": _cmd_list}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``distill`` command; user errors print one line and exit with status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("eval", "export"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.task_options = extra  # a family's own eval / export options, read by its Task
    console = Console()
    try:
        return COMMANDS[args.command](args, console)
    except DistillError as err:
        print(f"error: {err}", file=sys.stderr)  # unwrapped, so it can be grepped and copied
        return 2


if __name__ == "__main__":
    sys.exit(main())
