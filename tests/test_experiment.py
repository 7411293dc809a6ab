"""The shared experiment layer: recipes (overrides, task lookup, checks before any training),
the run folder, and the CLI's run / eval / export for every family."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

from distill.cli import main
from distill.errors import ConfigError
from distill.experiment import TASKS, get_task, load_recipe

ROOT = Path(__file__).parents[1]

TINY = {
    "name": "tiny",
    "data": {"name": "digits"},
    "teacher": {"model": "convnet", "options": {"channels": [8, 8, 8]}},
    "student": {"model": "mlp", "options": {"hidden": [16]}},
    "distill": {"pairs": [{"loss": "kd", "options": {"temperature": 2.0}}]},
    "train": {"steps": 20, "batch_size": 64, "progress": False},
}


def test_set_on_a_defaulted_section_keeps_its_other_defaults():
    recipe = load_recipe(TINY, ["teacher.train.lr=0.01"])
    assert recipe.teacher.train.lr == 0.01
    assert recipe.teacher.train.steps == 4000 and recipe.teacher.train.batch_size == 100  # the section's defaults


def test_a_dict_recipe_is_not_mutated():
    before = copy.deepcopy(TINY)
    load_recipe(TINY, ["teacher.train.lr=0.01", "distill.pairs.0.weight=2.0"])
    assert TINY == before


def test_a_recipe_without_data_is_an_error_not_mnist1d():
    tree = {k: v for k, v in TINY.items() if k != "data"}
    with pytest.raises(ConfigError, match=r"data: Field required"):
        load_recipe(tree)


@pytest.mark.parametrize("override,message", [
    ("distill.pairs.0.weight=.nan", "distill.pairs.0.weight"),
    ("distill.pairs.0.options.alpha=1.5", r"alpha must lie in \[0, 1\]"),
    ("distill.pairs.0.options.temprature=3", "Did you mean 'temperature'"),
    ("distill.pairs.0.loss=kdd", "unknown loss 'kdd'"),
])
def test_bad_loss_fields_are_refused_when_the_recipe_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(TINY, [override])


def test_the_task_field_selects_one_branch_for_the_errors():
    with pytest.raises(ConfigError) as info:
        load_recipe({"task": "steps", "name": "s", "data": {"name": "8gaussians"}, "method": {"name": "reflow"},
                     "bogus": 1})
    message = str(info.value)
    assert "bogus" in message and "student" not in message and "distill" not in message
    with pytest.raises(ConfigError, match="unknown task 'stepz'.*Did you mean 'steps'"):
        load_recipe({**TINY, "task": "stepz"})


def test_every_family_is_registered_with_its_methods():
    assert {"classification", "steps"} <= set(TASKS.names())
    assert "kd" in get_task("classification").methods and "reflow" in get_task("steps").methods


def test_a_bad_tap_fails_before_the_teacher_trains(tmp_path, capsys):
    args = ["run", "recipes/digits_kd.yaml", "--no-progress", "--out", str(tmp_path),
            "--set", "distill.pairs.1.teacher=conv9"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no module 'conv9'" in err and "conv3" in err  # names the closest real paths
    assert not (tmp_path / "teacher").exists() and not (tmp_path / "scratch").exists()


def test_mixup_with_a_label_loss_fails_before_the_teacher_trains(tmp_path, capsys):
    args = ["run", "recipes/digits_kd.yaml", "--no-progress", "--out", str(tmp_path),
            "--set", "distill.augment=mixup"]
    assert main(args) == 2  # kd's alpha 0.9 keeps a hard term, which would silently drop its labels under mixup
    err = capsys.readouterr().err
    assert "mixes labels away" in err and "kd" in err and "task_weight" in err
    assert not (tmp_path / "teacher").exists()


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory):
    """A finished run whose teacher was trained in it (its own cache: another test's cached teacher of the same
    recipe would be loaded instead, and the run would hold no teacher checkpoints)."""
    out = tmp_path_factory.mktemp("run")
    args = ["run", "recipes/digits_kd.yaml", "--no-progress", "--out", str(out), "--set", "train.steps=40",
            "--set", "teacher.train.steps=40", "--set", "train.checkpoint_every=20"]
    previous = os.environ.get("DISTILL_CACHE")
    os.environ["DISTILL_CACHE"] = str(tmp_path_factory.mktemp("own-cache"))
    try:
        assert main(args) == 0
    finally:
        os.environ["DISTILL_CACHE"] = previous
    return out


def _accuracy(out: str) -> str:
    line = next(line for line in out.splitlines() if "student" in line)
    return next(cell for cell in line.split("│") if "%" in cell).strip()


def test_eval_and_export_accept_the_runs_own_checkpoint_folders(classification_run, capsys):
    assert main(["eval", str(classification_run)]) == 0
    final = _accuracy(capsys.readouterr().out)
    checkpoint = classification_run / "distill" / "checkpoints" / "step_0000040"
    assert main(["eval", str(classification_run), "--weights", str(checkpoint)]) == 0
    assert _accuracy(capsys.readouterr().out) == final  # the same student, read from distiller.student.*
    assert main(["eval", str(classification_run), "--weights", str(classification_run / "scratch" / "checkpoints"
                                                                     / "step_0000040")]) == 0  # model.*
    out = classification_run / "from_ckpt.pt"
    assert main(["export", str(classification_run), "--weights", str(checkpoint), "--out", str(out)]) == 0
    assert torch.jit.load(str(out))(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_eval_refuses_weights_of_another_model(classification_run, capsys):
    teacher = classification_run / "teacher" / "checkpoints" / "step_0000040"
    assert main(["eval", str(classification_run), "--weights", str(teacher)]) == 2
    assert "do not hold this model" in capsys.readouterr().err


def test_results_json_has_one_schema(classification_run):
    results = json.loads((classification_run / "results.json").read_text())
    assert results["format"] == "distill-results-v1" and results["task"] == "classification"
    assert set(results["columns"]) >= {"name", "acc"} and len(results["rows"]) == 3
    assert (classification_run / "table.png").stat().st_size > 1000


STEPS_TINY = ["teacher.train.steps=20", "teacher.train.batch_size=64", "teacher.steps=4", "train.steps=6",
              "train.batch_size=64", "evaluate.samples=200", "evaluate.teacher_steps=[1]",
              "data.options.n_train=1000", "data.options.n_test=300", "teacher.options.hidden=16",
              "teacher.options.depth=1", "method.options.pairs=300"]


def _steps_args(out: Path, *extra: str) -> list[str]:
    args = ["run", "recipes/steps/reflow.yaml", "--no-progress", "--out", str(out)]
    for item in [*STEPS_TINY, *extra]:
        args += ["--set", item]
    return args


def test_a_steps_run_resumes_when_the_teacher_stage_has_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "empty-cache"))  # the teacher must train
    assert main([*_steps_args(tmp_path / "run"), "--resume"]) == 0
    assert (tmp_path / "run" / "teacher" / "checkpoints").is_dir()


def test_eval_and_export_of_a_steps_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # a wide terminal: the table's cells are not wrapped
    folder = tmp_path / "run"
    assert main(_steps_args(folder)) == 0
    table = json.loads((folder / "results.json").read_text())["rows"]
    capsys.readouterr()
    assert main(["eval", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "student (reflow)" in out and "noise floor" in out
    first = next(r for r in table if r["model"] == "student (reflow)" and r["steps"] == 1)
    assert f"{first['swd']:.4g}" in out  # the same generator, rebuilt from students.safetensors
    assert main(["export", str(folder)]) == 0
    scripted = torch.jit.load(str(folder / "student_1step.pt"))
    noise = torch.randn(5, 2)  # traced at a batch of 2: the batch size stays free
    assert scripted(noise).shape == (5, 2) and torch.isfinite(scripted(noise)).all()
    onnx = pytest.importorskip("onnx")
    assert main(["export", str(folder), "--format", "onnx"]) == 0
    model = onnx.load(str(folder / "student_2step.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["noise"] and model.graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_list_shows_tasks_and_each_tasks_methods(capsys):
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "classification" in out and "steps" in out
    assert main(["list", "steps-methods"]) == 0
    assert "shortcut" in capsys.readouterr().out
    assert main(["list", "nothing"]) == 2


def test_cpu_latency_leaves_the_callers_model_as_it_was():
    from distill.metrics.cost import cpu_latency_per_sample
    from distill.models import build_model

    model = build_model("mlp", (1, 8, 8), 10, hidden=[8]).train()
    assert cpu_latency_per_sample(model, torch.zeros(1, 1, 8, 8), repeats=5) > 0
    assert model.training and next(model.parameters()).device.type == "cpu"
