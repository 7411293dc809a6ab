"""The ``dataset`` family in the ``TASKS`` registry: condense a training set, score synthetic sets."""

from __future__ import annotations

from pathlib import Path

from distill.errors import ConfigError
from distill.experiment.runner import Run
from distill.experiment.table import Table
from distill.experiment.tasks import Outcome, Task, TaskOption, register_task
from distill.tasks.dataset.methods import CONDENSERS
from distill.tasks.dataset.recipe import ARCHITECTURES, DatasetRecipe
from distill.tasks.dataset.report import dataset_table, plot_accuracy_vs_ipc, plot_grid, set_table
from distill.tasks.dataset.run import SET_FILE, load_real, protocol, run_dataset_recipe
from distill.tasks.dataset.synthetic import SyntheticSet


class DatasetTask(Task):
    """Dataset distillation: a real training set condensed into a few synthetic images per class, scored by
    training fresh networks on it beside a random real subset, herding and the full data."""

    name = "dataset"
    recipe = DatasetRecipe
    methods = CONDENSERS
    eval_options = (TaskOption("--network", "network", "trains this architecture on the synthetic set instead "
                                                       "of the recipe's", "NAME"),)

    def execute(self, recipe: DatasetRecipe, run: Run) -> Outcome:
        result = run_dataset_recipe(recipe, run)
        table = dataset_table(result, recipe)
        synthetic = result.pop("synthetic")
        own = result["sets"][recipe.method.name][recipe.network.name][recipe.evaluate.augment[0]]
        points = {**result["curve"], recipe.method.name: {recipe.method.ipc: own}}
        figures = [("Synthetic set (one column per class)", plot_grid(synthetic.images, synthetic.ipc,
                                                                      run.folder / "synthetic.png")),
                   ("Accuracy against images per class", plot_accuracy_vs_ipc(
                       points, result["full"], run.folder / "accuracy_vs_ipc.png",
                       f"{recipe.network.name}, eval aug: {'DSA' if recipe.evaluate.augment[0] else 'none'}"))]
        return Outcome(table, result, figures)

    def evaluate(self, folder: Path, recipe: DatasetRecipe, weights: Path | None = None,
                 network: str | None = None) -> Table:
        """The run's synthetic set (or the ``.safetensors`` set ``weights``) scored by the recipe's protocol,
        trained on ``network`` (another architecture) when given."""
        path = Path(weights) if weights else Path(folder) / SET_FILE.format(seed=recipe.evaluate.seeds[0])
        if not path.is_file():
            raise ConfigError(f"no synthetic set at {path}; pass --weights a .safetensors file written by a dataset run "
                              "(SyntheticSet.save).")
        if network is not None and network not in ARCHITECTURES:
            raise ConfigError(f"--network {network!r} is not one of {', '.join(ARCHITECTURES)}.")
        synthetic = SyntheticSet.load(path)
        bank, *test = load_real(recipe)
        if synthetic.images.shape[1:] != bank.images.shape[1:] or synthetic.num_classes != bank.num_classes:
            raise ConfigError(f"{path} holds {synthetic.num_classes} classes of {tuple(synthetic.images.shape[1:])} "
                              f"images; this run's data ({recipe.data.name}) has {bank.num_classes} classes of "
                              f"{tuple(bank.images.shape[1:])}.")
        architectures = [network] if network else recipe.evaluate.architectures
        scoped = recipe.model_copy(update={"evaluate": recipe.evaluate.model_copy(update={"architectures": architectures})})
        result = protocol(scoped, bank, tuple(test), synthetic.images.detach(), synthetic.labels, recipe.evaluate.seeds[0])
        return set_table(path.stem, result, synthetic.ipc, recipe, f"{path.name} on {recipe.data.name}")

    def export(self, folder: Path, recipe: DatasetRecipe, fmt: str, weights: Path | None = None,
               out: Path | None = None) -> list[Path]:
        raise ConfigError(f"a dataset run's product is the synthetic set itself, already written as "
                          f"{Path(folder) / SET_FILE.format(seed=recipe.evaluate.seeds[0])} (images + labels).")


register_task(DatasetTask())
