"""A recipe that names only data, teacher and student: function matching on a schedule scaled to the data."""

from __future__ import annotations

import pytest
import torch
import yaml

import distill
from distill.augment import Mixup
from distill.cli import main
from distill.data import from_arrays, load_dataset
from distill.experiment import load_recipe
from distill.tasks.classification.defaults import (
    MAX_STEPS,
    MIN_STEPS,
    PLENTY_OF_LABELS,
    complete_recipe,
    default_train,
)
from distill.tasks.classification.recipe import ClassificationRecipe

BARE = {"name": "bare", "data": {"name": "digits"}, "teacher": {"model": "convnet", "train": {"steps": 30}},
        "student": {"model": "mlp", "options": {"hidden": [8]}}}


def test_the_schedule_scales_with_the_data_within_its_bounds():
    assert default_train(1_000).steps == MIN_STEPS
    assert default_train(60_000).steps == MAX_STEPS
    middle = default_train(7_000)  # 100 passes of 70 batches
    assert middle.steps == 7_000 and middle.batch_size == 100 and middle.eval_every == 700
    assert default_train(40).batch_size == 10  # a quarter of a tiny set


def test_missing_sections_become_function_matching_with_notes():
    recipe = ClassificationRecipe.model_validate(BARE)
    splits = load_dataset("digits")
    completed, notes = complete_recipe(recipe, splits)
    pair = completed.distill.pairs[0]
    assert (pair.loss, pair.options, completed.distill.augment) == ("kd", {"temperature": 1.0, "alpha": 1.0}, "mixup")
    assert completed.train.steps == default_train(len(splits.train)).steps
    assert len(notes) == 2 and "function matching" in notes[0] and f"{completed.train.steps:,} steps" in notes[1]


def test_with_plenty_of_labels_per_class_the_default_is_kd_with_labels():
    def splits(per_class: int):
        rng = torch.Generator().manual_seed(0)
        x = torch.randn(2 * per_class, 1, 8, 8, generator=rng).numpy()
        y = torch.arange(2).repeat(per_class).numpy()
        return from_arrays(x, y, x[:10], y[:10], num_classes=2)

    recipe = ClassificationRecipe.model_validate(BARE)
    plenty, notes = complete_recipe(recipe, splits(PLENTY_OF_LABELS))
    pair = plenty.distill.pairs[0]
    assert (pair.loss, pair.options, plenty.distill.augment) == ("kd", {"temperature": 4.0, "alpha": 0.5}, "none")
    assert not plenty.distill.use_transfer and "1,000 labels per class" in notes[0] and "Hinton" in notes[0]
    few, notes = complete_recipe(recipe, splits(PLENTY_OF_LABELS - 1))
    assert few.distill.augment == "mixup" and "function matching" in notes[0]


def test_given_sections_are_kept_and_not_noted():
    given = {**BARE, "train": {"steps": 12}, "distill": {"pairs": [{"loss": "dist"}]}}
    completed, notes = complete_recipe(ClassificationRecipe.model_validate(given), load_dataset("digits"))
    assert completed.train.steps == 12 and completed.distill.pairs[0].loss == "dist" and notes == []


def test_the_library_runs_a_bare_recipe_dict_as_the_cli_does(tmp_path):
    table = distill.run({**BARE, "train": {"steps": 10, "batch_size": 32, "progress": False}}, out=tmp_path / "lib")
    names = [row["name"] for row in table.rows]
    assert any(name.startswith("student distilled (mlp, kd, mixup)") for name in names)
    assert any("function matching" in note for note in table.notes)
    assert load_recipe(tmp_path / "lib" / "recipe.yaml").distill.augment == "mixup"


def test_self_distillation_without_distill_is_refused_at_load():
    with pytest.raises(ValueError, match="name distill.pairs yourself"):
        ClassificationRecipe.model_validate({**BARE, "teacher": "self"})


def test_paired_sensor_views_are_blended_alike_under_mixup():
    torch.manual_seed(0)
    teacher_x = torch.randn(6, 4, 5)
    student_x = teacher_x[:, :2]  # the student sees two of the teacher's four channels
    mixed = Mixup(1.0)(student_x)
    assert torch.allclose(mixed.blend(teacher_x)[:, :2], mixed.x)


def test_a_bare_recipe_runs_and_records_what_it_ran(tmp_path, capsys):
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump({**BARE, "train": {"steps": 20, "batch_size": 32}}))
    assert main(["run", str(path), "--no-progress", "--out", str(tmp_path / "run")]) == 0
    assert "function matching" in " ".join(capsys.readouterr().out.split())  # printed (wrapped) under the table
    assert "function matching" in (tmp_path / "run" / "report.md").read_text()
    recorded = load_recipe(tmp_path / "run" / "recipe.yaml")
    assert recorded.distill.augment == "mixup" and recorded.train.steps == 20
    assert main(["eval", str(tmp_path / "run")]) == 0


def test_a_cross_sensor_teacher_sees_its_own_view_blended_as_the_students():
    from torch import nn

    from distill import Distiller, Match
    from distill.tasks.classification.objectives import DistillObjective

    seen = {}

    class Recording(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4 * 5, 3)

        def forward(self, x):
            seen["teacher"] = x.detach().clone()
            return self.head(x.flatten(1))

    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5, 3))
    teacher_x = torch.randn(6, 4, 5)
    batch = {"x": teacher_x[:, :2].clone(), "y": torch.zeros(6, dtype=torch.long), "teacher_x": teacher_x}
    objective = DistillObjective(Distiller(student, Recording(), {("output", "output"): Match("kd")}), Mixup(1.0))
    torch.manual_seed(3)
    objective(batch)
    torch.manual_seed(3)
    expected = Mixup(1.0)(batch["x"]).blend(teacher_x)
    assert torch.allclose(seen["teacher"], expected) and not torch.allclose(seen["teacher"], teacher_x)
