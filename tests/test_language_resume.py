"""A seeded language run repeats exactly, whatever the process's random state before it, and a killed run
resumed with --resume ends bit for bit where the uninterrupted run ends (on-policy sampling and TAID's
adaptive state included)."""

from __future__ import annotations

import pytest
import torch
from language_fixtures import make_teacher
from safetensors.torch import load_file

from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.experiment.tasks import get_task
from distill.tasks.language.objectives import LanguageObjective
from distill.tasks.language.run import STUDENT_FOLDER


class Killed(Exception):
    """Stands for the process being killed."""


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher"))


def recipe_for(folder):
    return load_recipe({"name": "lm_resume", "task": "language", "teacher": {"source": str(folder)},
                        "data": {"corpus": "generated", "block_length": 16, "train_blocks": 24, "eval_blocks": 6},
                        "signals": {"source": "live", "k": 8},
                        "method": {"loss": "taid", "on_policy": 0.5, "prompt_tokens": 8},
                        "train": {"steps": 8, "batch_size": 4, "lr": 0.01, "eval_every": 4, "log_every": 2,
                                  "checkpoint_every": 2, "progress": False},
                        "evaluate": {"prompts": ["The king"], "sample_tokens": 4}})


def student_weights(folder):
    return load_file(folder / STUDENT_FOLDER / "model.safetensors")


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_seeded_run_repeats_whatever_the_random_state_before_it(teacher_folder, tmp_path):
    recipe, task = recipe_for(teacher_folder), get_task("language")
    tables = []
    for draw in (1, 2):
        torch.manual_seed(draw)  # a CLI process starts from an unseeded global generator
        tables.append(task.run(recipe, Run(tmp_path / f"run{draw}", recipe)))
    assert same(student_weights(tmp_path / "run1"), student_weights(tmp_path / "run2"))
    assert tables[0].rows == tables[1].rows


def test_a_killed_language_run_resumes_to_the_uninterrupted_one(teacher_folder, tmp_path, monkeypatch):
    recipe, task = recipe_for(teacher_folder), get_task("language")
    expected = task.run(recipe, Run(tmp_path / "whole", recipe))

    original, calls = LanguageObjective.forward, []

    def counted(self, batch):
        if len(calls) == 5:  # killed in step 6; the last checkpoint is step 4's
            raise Killed
        calls.append(1)
        return original(self, batch)

    with monkeypatch.context() as patch:
        patch.setattr(LanguageObjective, "forward", counted)
        torch.manual_seed(7)
        with pytest.raises(Killed):
            task.run(recipe, Run(tmp_path / "killed", recipe))
    assert not (tmp_path / "killed" / STUDENT_FOLDER / "model.safetensors").exists()
    calls.clear()
    with monkeypatch.context() as patch:
        patch.setattr(LanguageObjective, "forward", lambda self, batch: calls.append(1) or original(self, batch))
        torch.manual_seed(8)
        resumed = task.run(recipe, Run(tmp_path / "killed", recipe, resume=True))
    assert len(calls) == 4  # steps 5 to 8 only
    assert same(student_weights(tmp_path / "killed"), student_weights(tmp_path / "whole"))
    assert resumed.rows == expected.rows
