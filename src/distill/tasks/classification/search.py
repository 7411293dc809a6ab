"""``distill tune`` for classification: which method and knobs, chosen on held-out training data.

Optuna's TPE sampler (Bergstra et al., NeurIPS 2011; Akiba et al., KDD 2019, "Optuna"), seeded from
``train.seed``, draws settings from :mod:`distill.tasks.classification.space`; each method's published
setting is tried first. A trial trains the recipe's student for the recipe's budget on the training data
less a validation split, and reports its validation accuracy at every evaluation of the engine; a median
pruner stops trials that fall behind. The teacher is obtained once (from the content-hash cache, as
``distill run`` gets it) and serves every trial; scratch students with the same budget, one per
augmentation the trials use, are scored on the same split. The test split takes no part: the chosen
setting is written as a recipe and run once by ``distill run`` afterwards (see
:meth:`ClassificationTask.search <distill.tasks.classification.task.ClassificationTask.search>`).
Trials are stored in ``study.db`` (SQLite), so a search stopped midway continues with ``--resume``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from rich.console import Console

from distill.data import DataSplits, with_validation
from distill.engine.config import TRAIN_ONLY, TrainConfig
from distill.errors import ConfigError, DistillError, NonFiniteLossError
from distill.experiment.recipe import validate_recipe
from distill.experiment.runner import Run
from distill.experiment.table import Table
from distill.experiment.tasks import Outcome
from distill.tasks.classification.defaults import complete_recipe
from distill.tasks.classification.metrics import evaluate_classifier
from distill.tasks.classification.recipe import ClassificationRecipe
from distill.tasks.classification.report import plot_trials, setting_text, trials_table
from distill.tasks.classification.run import (
    check_recipe,
    distill_data,
    load_recipe_data,
    obtain_teacher,
    train_distilled,
    train_scratch,
)
from distill.tasks.classification.space import METHODS, Space, build_space, param_name, setting_tree

#: the validation split holds a tenth of the training samples, but at least this many (or a quarter of them)
MIN_VALIDATION = 100
STUDY_FILE = "study.db"
STUDY_NAME = "tune"
RECIPE_FILE = "best_recipe.yaml"


@dataclass
class SearchResult:
    """What a search found: the chosen recipe (to run on the whole training set), the trials, the scratch
    baselines' validation accuracy by augmentation, and the files it wrote."""

    chosen: ClassificationRecipe
    best: dict
    trials: list[dict]
    scratch: dict[str, float]
    validation: int
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


def check_searchable(recipe: ClassificationRecipe) -> None:
    """Refuse the recipes (and launches) the search does not cover, before anything trains."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("distill tune runs in one process (its trials share one study); start it without "
                          "torchrun / accelerate launch, and launch the chosen recipe with `distill run`.")
    if recipe.teacher == "self":
        raise ConfigError("distill tune searches how a student learns from a teacher; this recipe distils the "
                          "student into itself (teacher: self). Name a teacher, or run it with `distill run`.")
    if recipe.data.student_channels:
        raise ConfigError("distill tune does not search cross-sensor recipes (data.student_channels); run them "
                          "with `distill run`.")


def validation_size(recipe: ClassificationRecipe, train_samples: int) -> int:
    """The recipe's ``data.validation``, or a tenth of the training samples (at least ``MIN_VALIDATION``,
    or a quarter of a smaller set)."""
    return recipe.data.validation or max(train_samples // 10, min(MIN_VALIDATION, train_samples // 4))


def setting_recipe(recipe: ClassificationRecipe, params: dict, validation: int = 0,
                   extra_augments: list[str] | None = None, name: str | None = None) -> ClassificationRecipe:
    """``recipe`` with the trial setting ``params``, trained on all but ``validation`` training samples and
    scored on them (``0``: on the test split), without its ``search`` section; ``extra_augments`` join
    its scratch baselines; ``name`` renames it."""
    base = recipe.model_dump(mode="json", exclude_unset=True)
    base.pop("search", None)
    if name:
        base["name"] = name
    base["data"] = {**base["data"], "validation": validation} if validation else {
        k: v for k, v in base["data"].items() if k != "validation"}
    if extra_augments:
        base["baselines"] = {**base.get("baselines", {}),
                             "augments": list(dict.fromkeys([*recipe.baselines.augments, *extra_augments]))}
    return validate_recipe(ClassificationRecipe, setting_tree(base, params), f"(search setting {params})")


def recipe_space(recipe: ClassificationRecipe) -> Space:
    """The space the recipe's ``search`` section describes (the whole table without one)."""
    spec = recipe.search
    if spec is None:
        return build_space(recipe.train.lr)
    return build_space(recipe.train.lr, spec.methods, spec.lr, spec.ranges)


def _check_space(recipe: ClassificationRecipe, space: Space, splits: DataSplits) -> None:
    """Every method builds at its published setting (one dummy pass), and every knob's range ends make a
    valid recipe: a bad range fails here, before any training."""
    for method in space.methods:
        defaults = space.defaults(method)
        for end in ("low", "high"):
            setting_recipe(recipe, {**defaults, **{param_name(method, k): getattr(k, end) for k in method.knobs}})
        check_recipe(setting_recipe(recipe, defaults, len(splits.test)), splits, None)


def _budget_steps(config: TrainConfig, samples: int) -> int:
    """The optimizer steps of a run over ``samples`` training samples (as the engine's loader counts them)."""
    batches = samples // config.batch_size if config.drop_last else math.ceil(samples / config.batch_size)
    return config.total_steps(batches)


class PruningEvaluator:
    """The engine's evaluation callback for one trial: validation accuracy, reported to Optuna at each
    evaluation (every ``train.eval_every`` steps, the last at the end of the budget), and the trial stopped
    (``optuna.TrialPruned``) when the pruner says so. The last evaluation is the trial's score, never pruned."""

    def __init__(self, trial: optuna.Trial, validation, eval_every: int, total: int) -> None:
        self.trial, self.validation, self.eval_every, self.total = trial, validation, eval_every, total
        self.calls = 0

    def __call__(self, model, accelerator) -> dict[str, float]:
        metrics = evaluate_classifier(model, self.validation, accelerator)
        self.calls += 1
        step = min(self.calls * self.eval_every, self.total) if self.eval_every else self.total
        self.trial.report(metrics["acc"], step)
        if step < self.total and self.trial.should_prune():
            raise optuna.TrialPruned(f"validation accuracy {metrics['acc']:.4f} at step {step} is below the median")
        return metrics


def suggest(trial: optuna.Trial, space: Space) -> dict:
    """A trial's setting: the method, the learning rate, and the method's knobs."""
    methods = {method.name: method for method in space.methods}
    method = methods[trial.suggest_categorical("method", list(methods))]
    params = {"method": method.name, "lr": trial.suggest_float("lr", *space.lr, log=True)}
    for knob in method.knobs:
        name = param_name(method, knob)
        params[name] = trial.suggest_float(name, knob.low, knob.high, log=knob.log)
    return params


def default_pruner(space: Space, total: int) -> optuna.pruners.BasePruner:
    """Median pruning once every method's published setting has finished, never in a trial's first third."""
    return optuna.pruners.MedianPruner(n_startup_trials=len(space.methods), n_warmup_steps=total // 3)


def _identity(recipe: ClassificationRecipe) -> str:
    """The recipe as a study remembers it: what may change between sessions (the search's budget and trial
    cap, how training reports) is left out."""

    def kept(node):
        if isinstance(node, dict):
            return {k: kept(v) for k, v in node.items() if k not in TRAIN_ONLY}
        return [kept(v) for v in node] if isinstance(node, list) else node

    tree = kept(recipe.model_dump(mode="json"))
    if tree.get("search"):
        tree["search"] = {k: v for k, v in tree["search"].items() if k not in ("budget", "trials")}
    return json.dumps(tree, sort_keys=True)


def _storage(folder: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{(Path(folder) / STUDY_FILE).resolve()}")


def check_study(recipe: ClassificationRecipe, folder: Path, resume: bool) -> None:
    """A folder that holds a search is continued only with ``resume``, and only for the same recipe."""
    if not (Path(folder) / STUDY_FILE).exists():
        return
    if not resume:
        raise ConfigError(f"{folder} holds a search already ({STUDY_FILE}); continue it with --resume "
                          "(resume=True), or choose another --out.")
    stored = optuna.load_study(study_name=STUDY_NAME, storage=_storage(folder)).user_attrs.get("recipe")
    if stored != _identity(recipe):
        raise ConfigError(f"the search in {folder} was started with another recipe; --resume continues a search "
                          "with the recipe it began with (only search.budget and search.trials may change).")


def open_study(recipe: ClassificationRecipe, space: Space, folder: Path, pruner, seed: int) -> optuna.Study:
    """The study in ``folder/study.db`` of ``recipe`` (as given, before defaults are filled in): new (each
    method's published setting queued first), or the one a stopped search left, whose unfinished trials are
    marked failed. ``seed`` seeds the TPE sampler."""
    storage = _storage(folder)
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    if not study.trials:
        study.set_user_attr("recipe", _identity(recipe))
        for method in space.methods:
            study.enqueue_trial(space.defaults(method))
    study_id = storage.get_study_id_from_name(STUDY_NAME)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number),
                                       TrialState.FAIL)
    return study


@contextmanager
def _quiet_optuna():
    """Optuna's own log lines held back (the search prints one line a trial), its verbosity restored after."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _seconds(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def trial_row(trial: optuna.trial.FrozenTrial) -> dict:
    """One trial as a row of ``trials.csv`` (the fields of ``report.TRIAL_FIELDS`` and the method's knobs):
    number, state, method, validation accuracy (for a pruned trial, the last it reported, at ``step``),
    learning rate, knobs, seconds, error."""
    method = METHODS.get(trial.params.get("method"))
    reported = trial.intermediate_values
    step = max(reported) if reported else None
    acc = trial.value if trial.state == TrialState.COMPLETE else reported.get(step) if reported else None
    knobs = {knob.name: trial.params.get(param_name(method, knob)) for knob in method.knobs} if method else {}
    return {"trial": trial.number, "state": trial.state.name.lower(), "method": trial.params.get("method"),
            "val_acc": acc, "step": step, "lr": trial.params.get("lr"), **knobs, "seconds": _seconds(trial),
            "error": trial.user_attrs.get("error")}


def write_trials(rows: list[dict], folder: Path) -> dict[str, Path]:
    """``trials.csv`` (one row a trial, every knob a column) and ``trials.json``."""
    last = ("seconds", "error")
    columns = [key for key in dict.fromkeys(key for row in rows for key in row) if key not in last] + list(last)
    with open(folder / "trials.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (folder / "trials.json").write_text(json.dumps(rows, indent=1))
    return {"trials.csv": folder / "trials.csv", "trials.json": folder / "trials.json"}


def write_recipe(recipe: ClassificationRecipe, row: dict, scratch: dict[str, float], path: Path) -> Path:
    """The chosen setting as a recipe ``distill run`` takes, with a header saying where it came from."""
    baselines = ", ".join(f"scratch{'' if a == 'none' else ' ' + a} {100 * acc:.2f} %" for a, acc in scratch.items())
    header = (f"# Chosen by `distill tune`: trial {row['trial']}, {row['method']}, validation accuracy "
              f"{100 * row['val_acc']:.2f} % ({baselines} on the same split).\n"
              f"# Run it on the whole training set and score it on the test split: distill run {path.name}\n")
    path.write_text(header + yaml.safe_dump(recipe.model_dump(mode="json", exclude_unset=True), sort_keys=False))
    return path


def run_search(recipe: ClassificationRecipe, run: Run, budget_s: float, trials: int | None = None,
               pruner: optuna.pruners.BasePruner | None = None, console: Console | None = None) -> SearchResult:
    """Search ``recipe``'s method and knobs for ``budget_s`` seconds of trials (at most ``trials`` in all) in
    ``run``'s folder, on a validation split of the training data; ``pruner`` replaces the median pruner.
    The budget bounds the trials; the teacher (once, from the cache when it can) and one scratch student per
    augmentation come before them. Writes ``trials.csv``, ``trials.json``, ``trials.png`` and the chosen
    recipe, and prints one line a trial; nothing here is scored on the test split."""
    console = console or Console()
    check_searchable(recipe)
    given = recipe
    whole = recipe.model_copy(update={"data": recipe.data.model_copy(update={"validation": 0})})
    full = load_recipe_data(whole)
    recipe, _ = complete_recipe(recipe, full)
    whole = recipe.model_copy(update={"data": recipe.data.model_copy(update={"validation": 0})})
    space = recipe_space(recipe)
    size = validation_size(recipe, len(full.train))
    splits = with_validation(full, size)
    _check_space(recipe, space, splits)
    first = setting_recipe(recipe, space.defaults(space.methods[0]), size)
    total = _budget_steps(first.train, len(distill_data(first, splits)))  # the same in every trial

    # the teacher `distill run` uses (the whole training set, cached); scored on validation: the test split waits
    teacher, _ = obtain_teacher(whole, dataclasses.replace(full, test=splits.test), run)
    scratch = {augment: train_scratch(recipe, splits, run, augment)[1].acc for augment in space.augments}
    console.print(f"validation split: {size} of {len(full.train)} training samples; scratch students: "
                  + ", ".join(f"{a} {100 * acc:.2f} %" for a, acc in scratch.items()), markup=False, highlight=False)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        setting = setting_recipe(recipe, params, size)
        evaluator = PruningEvaluator(trial, splits.test, setting.train.eval_every, total)
        try:
            _, row = train_distilled(setting, splits, teacher, Run(run.folder / "trials" / f"{trial.number:03d}",
                                                                   setting), evaluator=evaluator)
        except NonFiniteLossError as err:
            trial.set_user_attr("error", str(err).split(";")[0])
            raise
        return row.acc

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        row = trial_row(trial)
        what = {"complete": f"val {100 * (row['val_acc'] or 0):.2f} %",
                "pruned": f"pruned at step {row['step']} (val {100 * (row['val_acc'] or 0):.2f} %)",
                "fail": f"failed: {row['error']}"}[row["state"]]
        best = study.best_trial if any(t.state == TrialState.COMPLETE for t in study.trials) else None
        setting = ", ".join(filter(None, [setting_text(row), f"lr {row['lr']:.3g}"]))
        console.print(f"trial {trial.number}: {row['method']} {setting} → {what}"
                      + (f"; best {100 * best.value:.2f} % (trial {best.number})" if best else ""),
                      markup=False, highlight=False)

    with _quiet_optuna():
        study = open_study(given, space, run.folder, pruner or default_pruner(space, total), recipe.train.seed)
        done = [t for t in study.trials if t.state.is_finished()]
        spent = sum(_seconds(t) or 0.0 for t in done)
        remaining = None if trials is None else trials - len(done)
        if (remaining is None or remaining > 0) and spent < budget_s:
            study.optimize(objective, n_trials=remaining, timeout=budget_s - spent, catch=(NonFiniteLossError,),
                           callbacks=[progress])

    rows = [trial_row(t) for t in study.trials if t.state.is_finished()]
    files = write_trials(rows, run.folder)
    files["trials.png"] = plot_trials(rows, scratch, run.folder / "trials.png")
    trials_table(rows, f"{recipe.name}: trials (validation split of {size})").print(console)
    if not any(row["state"] == "complete" for row in rows):
        raise DistillError(f"no trial finished in the budget ({len(rows)} pruned or failed; see "
                           f"{files['trials.csv']}): raise --budget or lower train.steps.")
    best = next(row for row in rows if row["trial"] == study.best_trial.number)
    chosen = setting_recipe(recipe, study.best_trial.params, extra_augments=space.augments, name=f"{recipe.name}-tuned")
    files[RECIPE_FILE] = write_recipe(chosen, best, scratch, run.folder / RECIPE_FILE)
    seconds = sum(row["seconds"] or 0.0 for row in rows)
    return SearchResult(chosen, best, rows, scratch, size, seconds, files)


def tune_outcome(found: SearchResult, final: Table, budget_s: float) -> Outcome:
    """What ``distill tune`` reports: the test table of the final run (the chosen setting and scratch, each
    trained once on the whole training set), with what the search chose on validation, the trials as a
    Markdown section and a plot, and the numbers for ``results.json``."""
    best, scratch = found.best, found.scratch
    baselines = ", ".join(f"{a if a != 'none' else 'no augmentation'} {100 * acc:.2f} %" for a, acc in scratch.items())
    states = {state: sum(row["state"] == state for row in found.trials) for state in ("complete", "pruned", "fail")}
    notes = [f"Chosen on a validation split of {found.validation} training samples: trial {best['trial']}, "
             f"{best['method']} ({setting_text(best) or 'no knobs'}), lr {best['lr']:.3g} → "
             f"{100 * best['val_acc']:.2f} %; scratch on the same split: {baselines}. Recipe: {RECIPE_FILE}.",
             f"Search: {len(found.trials)} trials ({states['complete']} complete, {states['pruned']} pruned, "
             f"{states['fail']} failed), {found.seconds:.0f} s of trials in a {budget_s:.0f} s budget.",
             "The test split is used only here, after the choice: each model above trained once on the whole "
             "training set (the final/ folder, the same as `distill run " + RECIPE_FILE + "`)."]
    if best["val_acc"] <= max(scratch.values()):
        notes.append("Note: on validation no trial beat the best scratch student; distillation did not help at "
                     "this budget.")
    table = dataclasses.replace(final, title=f"{found.chosen.name}: the chosen setting and scratch on the test split",
                                notes=[*notes, *final.notes])
    trials = trials_table(found.trials, f"Trials (validation split of {found.validation})")
    recipe_text = found.files[RECIPE_FILE].read_text()
    details = {"search": {"budget_s": budget_s, "seconds": found.seconds, "validation": found.validation,
                          "trials": states, "best": best, "scratch": scratch},
               "test": {row["name"]: row["acc"] for row in final.rows},
               "files": {name: str(path) for name, path in found.files.items()}}
    sections = [f"## {trials.title}\n\n{trials.markdown()}", f"## The chosen recipe\n\n```yaml\n{recipe_text}```"]
    return Outcome(table, details, [("Trials: validation accuracy", found.files["trials.png"])], sections)
