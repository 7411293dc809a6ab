"""Every step-distillation recipe in recipes/steps/ runs end to end (tiny budgets), through the API and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from distill.cli import main
from distill.data.toys import TOYS
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import build_process
from distill.errors import ConfigError
from distill.experiment import Run, get_task, load_recipe
from distill.tasks.steps.methods import STEP_METHODS
from distill.tasks.steps.methods.reflow import ReflowObjective

RECIPES = sorted(Path(__file__).parents[1].glob("recipes/steps/*.yaml"))
TEACHER_STEPS = 4

#: per-method overrides that shrink the run; a new method runs with the common ones alone
METHOD_OVERRIDES = {
    "progressive": [f"method.options.start_steps={TEACHER_STEPS}"],
    "reflow": ["method.options.pairs=300"],
    "dmd": ["method.options.pairs=300"],
    "shortcut": ["method.options.min_step=4"],
    "consistency": ["method.options.intervals=8"],
}
#: the step counts each method's students are scored at (under the overrides above)
STUDENT_STEPS = {"progressive": [1, 2], "reflow": [1, 2, 4], "dmd": [1], "shortcut": [1, 2, 4],
                 "consistency": [1, 2, 4]}


def load_steps_recipe(path, overrides=None):
    recipe = load_recipe(path, overrides)
    assert recipe.task == "steps"
    return recipe


def run_steps_recipe(recipe, folder: Path):
    return get_task("steps").run(recipe, Run(folder, recipe))


def _tree(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def tiny_overrides(path: Path) -> list[str]:
    """--set overrides that make ``path`` run in about a second."""
    tree = _tree(path)
    overrides = ["teacher.train.steps=20", "teacher.train.epochs=null", "teacher.train.batch_size=64",
                 f"teacher.steps={TEACHER_STEPS}", "train.steps=6", "train.epochs=null", "train.batch_size=64",
                 "evaluate.samples=200", "evaluate.teacher_steps=[1,2]", "teacher.train.progress=false",
                 "train.progress=false"]
    if tree["data"]["name"] in TOYS:
        overrides += ["data.options.n_train=1000", "data.options.n_test=300", "teacher.options.hidden=16",
                      "teacher.options.depth=1"]
    else:  # images: a small net and a short classifier for the metrics
        # fields of a defaulted section: the section's other defaults stay
        overrides += ["evaluate.classifier.train.steps=10", "evaluate.classifier.train.epochs=null",
                      "evaluate.classifier.train.batch_size=64", "evaluate.classifier.train.progress=false"]
        if tree["data"]["name"] == "mnist":
            overrides += ["data.options.limit_train=256", "data.options.limit_test=256", "evaluate.samples=100"]
        if tree["data"]["name"] == "mesh_points":  # point sets: few small clouds (400 held out: 200 scored)
            overrides += ["data.options.points=16", "data.options.train_per_class=25",
                          "data.options.test_per_class=100"]
        model = tree.get("teacher", {}).get("model", "mlp")
        if model == "unet":
            overrides += ["teacher.options.channels=[8,16]", "teacher.options.groups=4"]
        elif not model.startswith("diffusers:"):  # a diffusers folder is given whole (built tiny by the test)
            overrides += ["teacher.options.hidden=16", "teacher.options.depth=1"]
    return overrides + METHOD_OVERRIDES.get(tree["method"]["name"], [])


def test_recipes_cover_every_method():
    assert RECIPES, "no recipes found under recipes/steps/"
    assert {_tree(p)["method"]["name"] for p in RECIPES} == set(STEP_METHODS.names())


def build_teacher_folder(path: Path, folder: Path, monkeypatch) -> None:
    """A recipe whose teacher is a diffusers folder (the README says how to make it) runs from a tiny
    random one built here, in the current directory the recipe's relative path starts from."""
    model = _tree(path).get("teacher", {}).get("model", "")
    if model.startswith("diffusers:"):
        pytest.importorskip("diffusers")
        from diffusers_fixtures import save_folder

        monkeypatch.chdir(folder)
        save_folder(folder / model.removeprefix("diffusers:"), "ddpm")


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_end_to_end(path, tmp_path, monkeypatch):
    build_teacher_folder(path, tmp_path, monkeypatch)
    recipe = load_steps_recipe(path, tiny_overrides(path))
    method = recipe.method.name
    table = run_steps_recipe(recipe, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["task"] == "steps" and results["name"] == recipe.name and results["details"]["method"] == method
    assert results["rows"] == json.loads(json.dumps(table.rows))
    floor_row, *rows = results["rows"]
    assert floor_row["model"] == "real data (noise floor)"
    results["rows"] = rows
    teacher_name = f"teacher ({recipe.teacher.solver})"
    guided = recipe.teacher.conditional and recipe.teacher.cfg_scale != 1.0
    heun = recipe.teacher.solver == "heun"
    per_call = 2 if guided else 1
    teacher_rows = [r for r in results["rows"] if r["model"] == teacher_name]
    student_rows = [r for r in results["rows"] if r["model"] == f"student ({method})"]
    assert len(teacher_rows) + len(student_rows) == len(results["rows"])
    assert [r["steps"] for r in teacher_rows] == [1, 2, TEACHER_STEPS]
    assert [r["nfe"] for r in teacher_rows] == [per_call * (2 * r["steps"] - 1 if heun else r["steps"])
                                                for r in teacher_rows]
    assert student_rows
    if method in STUDENT_STEPS:
        assert [r["steps"] for r in student_rows] == STUDENT_STEPS[method]
    floor = results["details"]["floor"]
    metrics = set(floor)
    assert metrics and all(math.isfinite(v) for v in floor.values())
    assert all(floor_row[m] == floor[m] for m in metrics)
    for row in results["rows"]:
        assert metrics <= set(row), row
        assert all(math.isfinite(row[m]) for m in metrics), row
        assert row["nfe"] >= row["steps"] >= 1 and row["ms_per_sample"] > 0
    assert results["details"]["teacher"]["steps"] == TEACHER_STEPS and results["details"]["student_train_seconds"] > 0
    details = results["details"]
    held_out = int(recipe.data.options.get("n_test", recipe.data.options.get("limit_test", 10_000)))
    assert details["scored_samples"] == min(recipe.evaluate.samples, held_out // 2)
    assert details["floor_spread"] > 0  # the bootstrap excess is on by default
    for row in results["rows"]:
        assert row["excess"] >= 0 and 0 <= row["excess_low"] <= row["excess_high"], row
    if "fd" in floor:  # images: the feature classifier's own test accuracy is stated
        assert 0 < details["classifier_accuracy"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert report.startswith(f"# {recipe.name}")
    assert report.count(f"| student ({method}) |") == len(student_rows)
    assert report.count(f"| {teacher_name} |") == len(teacher_rows)
    for plot in ("samples.png", "metric_vs_nfe.png"):
        assert (tmp_path / plot).stat().st_size > 1000
        assert f"]({plot})" in report
    assert load_steps_recipe(tmp_path / "recipe.yaml") == recipe  # the recipe as run, reloadable


def _cli_args(path: Path, out: Path, extra: list[str] = ()) -> list[str]:
    args = ["run", str(path), "--no-progress", "--out", str(out)]
    for item in [*tiny_overrides(path), *extra]:
        args += ["--set", item]
    return args


def _recipe(method: str) -> Path:
    """The toy recipe of ``method`` (``recipes/steps/<method>.yaml``)."""
    return next(p for p in RECIPES if p.stem == method)


def test_cli_runs_a_steps_recipe(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # a wide terminal: the table's cells are not wrapped
    path = _recipe("reflow")
    assert main(_cli_args(path, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "student (reflow)" in out and "report.md" in out
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"real data (noise floor)", "teacher (heun)", "student (reflow)"}
    assert (tmp_path / "reflow" / "metrics.csv").exists() and (tmp_path / "reflow_distill_1").is_dir()


def test_cli_unknown_method_lists_the_valid_ones(tmp_path, capsys):
    assert main(_cli_args(_recipe("reflow"), tmp_path, ["method.name=reflw"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'reflw'" in err and "Did you mean 'reflow'" in err
    assert all(name in err for name in STEP_METHODS.names())


def test_bad_fields_are_listed_in_one_config_error():
    with pytest.raises(ConfigError) as info:
        load_steps_recipe(_recipe("reflow"), ["teacher.solver=rk4", "evaluate.sample=10"])
    message = str(info.value)
    assert "teacher.solver" in message and "rk4" in message
    assert "evaluate.sample" in message


def test_bad_method_option_is_refused_when_the_recipe_loads():
    with pytest.raises(ConfigError, match="power of two"):
        load_steps_recipe(_recipe("shortcut"), ["method.options.min_step=6"])


def test_reflow_regresses_each_parameterisation_on_the_pair_and_samples_diffusion_with_ddim():
    """Reflow's target is the pair (x1, z) in the student's own parameterisation: the velocity z − x1 on
    the flow path, ε = z on a diffusion path (where DDIM, not Euler, is the exact step)."""
    sample, noise = torch.randn(3, 2), torch.randn(3, 2)
    batch = {"sample": sample, "noise": noise, "y": None}
    for process, prediction, exact, solver in (("flow", "velocity", noise - sample, "euler"),
                                               ("diffusion", "eps", noise, "ddim")):
        student = Denoiser(Constant(exact), build_process(process), prediction)
        assert ReflowObjective(student, 0.9)(batch)["loss"].item() < 1e-12  # predicting the pair is exact
        wrong = Denoiser(Constant(noise - sample if prediction == "eps" else noise), build_process(process),
                         prediction)
        assert ReflowObjective(wrong, 0.9)(batch)["loss"].item() > 0.1
        assert STEP_METHODS.build("reflow").generator(student).solver == solver


class Constant(torch.nn.Module):
    """A 'network' that outputs a fixed tensor whatever it is asked."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value, self.weight = value, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None, d=None):
        return self.value + 0 * self.weight
