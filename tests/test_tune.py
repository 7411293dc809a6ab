"""``distill tune``: a seeded search on a validation split of the training data, pruned through the engine's
evaluation callback, beside scratch; the chosen setting as a recipe, scored on the test split once."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

import distill
from distill.cli import main
from distill.errors import ConfigError
from distill.experiment import Run, load_recipe
from distill.experiment.tune import parse_budget
from distill.tasks.classification import run as run_module
from distill.tasks.classification import search as search_module
from distill.tasks.classification.search import PruningEvaluator, run_search

TINY = {
    "name": "tiny-tune",
    "data": {"name": "digits"},
    "teacher": {"model": "mlp", "options": {"hidden": [64]},
                "train": {"steps": 100, "batch_size": 64, "lr": 0.01, "progress": False}},
    "student": {"model": "mlp", "options": {"hidden": [8]}},
    "distill": {"pairs": [{"loss": "kd", "options": {"temperature": 2.0}}]},
    "train": {"steps": 20, "batch_size": 64, "lr": 0.01, "eval_every": 10, "progress": False},
}
TRAIN, TEST, VALIDATION = 1347, 450, 134  # digits at its defaults; a tenth of train is held out


class PruneTrials(optuna.pruners.BasePruner):
    """Prunes the trials of the given numbers at their first report."""

    def __init__(self, numbers: set[int]) -> None:
        self.numbers = numbers

    def prune(self, study, trial) -> bool:
        return trial.number in self.numbers


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One ``distill tune`` from the command line (4 trials, trial 1 pruned), with every evaluation's data
    size recorded."""
    folder = tmp_path_factory.mktemp("tune")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    sizes: list[int] = []

    def spy(original):
        def evaluate(model, dataset, *args, **kwargs):
            sizes.append(len(dataset))
            return original(model, dataset, *args, **kwargs)
        return evaluate

    with pytest.MonkeyPatch.context() as patch:
        for module in (run_module, search_module):
            patch.setattr(module, "evaluate_classifier", spy(module.evaluate_classifier))
        patch.setattr(search_module, "default_pruner", lambda space, total: PruneTrials({1}))
        code = main(["tune", str(recipe), "--budget", "5m", "--trials", "4", "--out", str(folder / "out"),
                     "--no-progress"])
    assert code == 0
    return folder / "out", sizes


def test_trials_are_scored_on_validation_and_the_test_split_only_after_the_choice(tuned):
    out, sizes = tuned
    assert set(sizes) == {VALIDATION, TEST}
    first_test = sizes.index(TEST)
    assert VALIDATION not in sizes[first_test:]  # nothing is scored on validation once the test split is used
    names = [row["name"] for row in json.loads((out / "final" / "results.json").read_text())["rows"]]
    assert names[:3] == ["teacher (mlp)", "student scratch (mlp)", "student scratch (mlp, mixup)"]
    assert names[3].startswith("student distilled") and len(names) == 4


def _best(out):
    return json.loads((out / "results.json").read_text())["details"]["search"]["best"]


def test_trials_csv_has_every_trial_and_the_pruned_one_is_marked(tuned):
    out, _ = tuned
    rows = (out / "trials.csv").read_text().splitlines()
    header, *trials = [line.split(",") for line in rows]
    assert len(trials) == 4
    by_number = {int(row[0]): dict(zip(header, row)) for row in trials}
    assert by_number[1]["state"] == "pruned" and by_number[1]["step"] == "10"  # the first of 2 reports
    assert {by_number[n]["state"] for n in (0, 2, 3)} == {"complete"}
    # each method's published setting is tried first (the default, function matching, leading), at the recipe's
    # learning rate
    assert [by_number[n]["method"] for n in range(4)] == ["function_matching", "kd", "dist", "dkd"]
    assert float(by_number[1]["temperature"]) == 4.0 and float(by_number[0]["lr"]) == 0.01
    assert len(json.loads((out / "trials.json").read_text())) == 4
    assert (out / "trials.png").stat().st_size > 0 and "## Trials" in (out / "report.md").read_text()


def test_the_written_recipe_holds_the_chosen_setting_and_reruns_the_final_scores(tuned, tmp_path):
    out, _ = tuned
    best = _best(out)
    assert best["state"] == "complete"
    assert best["val_acc"] == max(row["val_acc"] for row in json.loads((out / "trials.json").read_text())
                                  if row["state"] == "complete")
    chosen = load_recipe(out / "best_recipe.yaml")
    pair = chosen.distill.pairs[0]
    assert pair.loss == best["method"] and chosen.train.lr == best["lr"]
    assert pair.options["temperature"] == best["temperature"]
    assert chosen.data.validation == 0 and chosen.search is None  # trained on all of train, scored on test
    assert chosen.baselines.augments == ["none", "mixup"]
    assert main(["run", str(out / "best_recipe.yaml"), "--out", str(tmp_path), "--no-progress"]) == 0
    rerun = json.loads((tmp_path / "results.json").read_text())["rows"]
    final = json.loads((out / "final" / "results.json").read_text())["rows"]
    assert [row["acc"] for row in rerun] == [row["acc"] for row in final]


def _search(folder, **changes):
    recipe = load_recipe({**TINY, "search": {"methods": ["kd", "dist"]}, **changes})
    return run_search(recipe, Run(folder, recipe), budget_s=300, trials=4)


def test_a_seeded_search_repeats_exactly(tmp_path):
    first, second = _search(tmp_path / "a"), _search(tmp_path / "b")
    keep = ("trial", "state", "method", "val_acc", "lr", "temperature", "alpha", "weight")
    assert [{k: r.get(k) for k in keep} for r in first.trials] == [{k: r.get(k) for k in keep} for r in second.trials]
    assert {r["method"] for r in first.trials} == {"kd", "dist"} and len(first.trials) == 4
    assert first.trials[2]["lr"] != first.trials[0]["lr"]  # past the published settings, the sampler draws


def test_a_stopped_search_resumes_and_marks_its_unfinished_trial_failed(tmp_path):
    recipe = load_recipe({**TINY, "search": {"methods": ["kd"]}})
    run_search(recipe, Run(tmp_path, recipe), budget_s=300, trials=1)
    optuna.load_study(study_name="tune", storage=f"sqlite:///{tmp_path / 'study.db'}").ask()  # killed mid-trial
    with pytest.raises(ConfigError, match="holds a search already.*--resume"):
        distill.tune(recipe, budget_s=300, out=tmp_path)
    with pytest.raises(ConfigError, match="started with another recipe"):
        distill.tune(recipe, budget_s=300, out=tmp_path, overrides=["train.steps=40"], resume=True)
    # the same search, logged more often: how training reports may change between sessions
    distill.tune(recipe, budget_s=300, trials=3, out=tmp_path, overrides=["train.log_every=5"], resume=True)
    trials = json.loads((tmp_path / "trials.json").read_text())
    assert [row["state"] for row in trials] == ["complete", "fail", "complete"]


def test_the_evaluator_reports_each_evaluation_at_its_step_and_never_prunes_the_last(monkeypatch):
    class AlwaysPrune:
        def __init__(self):
            self.steps = []

        def report(self, value, step):
            self.steps.append(step)

        def should_prune(self):
            return True

    monkeypatch.setattr(search_module, "evaluate_classifier", lambda model, data, accelerator: {"acc": 0.5})
    trial = AlwaysPrune()
    evaluator = PruningEvaluator(trial, None, eval_every=10, total=25)
    with pytest.raises(optuna.TrialPruned):
        evaluator(None, None)
    evaluator.calls = 2  # the engine's third and last evaluation comes at the end of the budget, step 25
    assert evaluator(None, None) == {"acc": 0.5}
    assert trial.steps == [10, 25]


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("20m", 1200), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150)])
def test_budgets_read_as_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["20", "20 minutes", "m", "0s", "-5m", ""])
def test_a_bad_budget_is_one_clear_error(text):
    with pytest.raises(ConfigError, match="budget .* (is not a duration|no time)"):
        parse_budget(text)


def test_a_bad_budget_on_the_command_line_or_in_the_recipe_is_refused(tmp_path, capsys):
    assert main(["tune", "recipes/digits_kd.yaml", "--budget", "20x", "--out", str(tmp_path / "out")]) == 2
    assert "budget '20x' is not a duration" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="search.budget: .*'soon' is not a duration"):
        load_recipe({**TINY, "search": {"budget": "soon"}})
    with pytest.raises(ConfigError, match="needs a budget"):
        distill.tune(TINY, out=tmp_path / "out")


@pytest.mark.parametrize("search,message", [
    ({"methods": ["kd", "kdd"]}, r"search.methods: .*unknown search method 'kdd'. Did you mean 'kd'"),
    ({"methods": []}, "the search space is empty: name at least one method of function_matching, kd, dist, dkd, lskd"),
    ({"methods": ["kd"], "ranges": {"beta": [1, 2]}}, r"unknown knob 'beta'.*the knobs of kd"),
    ({"lr": [0.1, 0.01]}, r"lr must be \[low, high\] with 0 < low <= high"),
])
def test_a_bad_search_section_is_refused_when_the_recipe_loads(search, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe({**TINY, "search": search})


def test_a_range_that_makes_a_bad_recipe_fails_before_any_training(tmp_path):
    recipe = load_recipe({**TINY, "search": {"methods": ["kd"], "ranges": {"alpha": [0.5, 2.0]}}})
    with pytest.raises(ConfigError, match=r"alpha must lie in \[0, 1\]"):
        distill.tune(recipe, budget_s=60, out=tmp_path)
    assert not (tmp_path / "teacher").exists() and not (tmp_path / "study.db").exists()


def test_recipes_the_search_does_not_cover_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="the steps family has no search; it searches classification recipes"):
        distill.tune("recipes/steps/reflow.yaml", budget_s=60, out=tmp_path / "steps")
    with pytest.raises(ConfigError, match="teacher: self"):
        distill.tune({**TINY, "teacher": "self"}, budget_s=60, out=tmp_path / "self")
    assert not (tmp_path / "steps").exists() and not (tmp_path / "self").exists()


def test_a_trial_stopped_midway_leaves_no_hooks_on_the_shared_teacher(tmp_path, digits):
    from distill.tasks.classification.run import build_student, train_distilled

    recipe = load_recipe({**TINY, "distill": {"pairs": [{"student": "fc1", "teacher": "fc1", "loss": "fitnet"}]}})
    teacher = build_student(recipe, digits)  # any network serves as the teacher here

    def prune(model, accelerator):
        raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned) as stopped:  # the error, and so the trial's frames, are still held
        train_distilled(recipe, digits, teacher, Run(tmp_path, recipe), evaluator=prune)
    assert stopped.value is not None
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in teacher.modules())


def test_a_launch_of_several_processes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="distill tune runs in one process"):
        distill.tune(TINY, budget_s=60, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
