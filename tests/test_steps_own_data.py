"""The user's own denoiser by import path (given by a weights file or trained by the run, its process and
prediction declared in the recipe) and the user's own images without labels (``unlabelled: true`` in
``arrays`` / ``image_folder``), in the steps and score families (issue 27)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from distill.data import load_dataset
from distill.data.generative import load_generative_data
from distill.diffusion.teacher import build_diffusion_model, build_diffusion_net
from distill.errors import CheckpointError, ConfigError, DistillError
from distill.experiment import Run, get_task, load_recipe
from distill.losses.base import IGNORE_INDEX
from distill.tasks.classification.run import load_recipe_data

OWN_DENOISERS = '''
import torch
from torch import nn


class TinyDenoiser(nn.Module):
    """Two convolutions that see the time as one more channel."""

    def __init__(self, input_shape, width=8):
        super().__init__()
        self.inp = nn.Conv2d(input_shape[0] + 1, width, 3, padding=1)
        self.out = nn.Conv2d(width, input_shape[0], 3, padding=1)

    def forward(self, x, t):
        time = t.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])
        return self.out(torch.relu(self.inp(torch.cat([x, time], 1))))


class LabelledDenoiser(TinyDenoiser):
    """The same with a class embedding added to the input; label -1 (and the last row) is the null class."""

    def __init__(self, input_shape, num_classes, width=8):
        super().__init__(input_shape, width)
        self.label = nn.Embedding(num_classes + 1, 1)

    def forward(self, x, t, y):
        y = torch.where(y < 0, self.label.num_embeddings - 1, y)
        return super().forward(x + self.label(y).view(-1, 1, 1, 1), t)


class Flat(nn.Module):
    """Returns one row per sample, not an image."""

    def forward(self, x, t):
        return x.flatten(1)
'''

TINY_EVAL = {"samples": 40, "teacher_steps": [1], "bootstrap": 0,
             "classifier": {"options": {"channels": [4, 4, 4]}, "train": {"steps": 3, "epochs": None,
                                                                          "batch_size": 32, "progress": False}}}
TINY_TRAIN = {"steps": 2, "epochs": None, "batch_size": 16, "progress": False}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A current directory holding own_denoisers.py."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "own_denoisers.py").write_text(OWN_DENOISERS)
    return tmp_path


def steps_recipe(teacher: dict, method: dict, data: dict | None = None) -> dict:
    return {"name": "t", "task": "steps", "data": data or {"name": "digits"},
            "teacher": {"solver": "ddim", "steps": 4, **teacher}, "method": method, "train": TINY_TRAIN,
            "evaluate": TINY_EVAL}


def run(tree: dict, folder):
    recipe = load_recipe(tree)
    get_task(recipe.task).run(recipe, Run(folder, recipe))
    return recipe, json.loads((folder / "results.json").read_text())


def write_images(folder, count: int, size: int = 8, mode: str = "L", seed: int = 0) -> None:
    """``count`` random images, half of them in a sub-folder (unlabelled reading takes both)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        path = folder / ("nested" if i % 2 else ".") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (size, size) if mode == "L" else (size, size, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def test_a_module_by_import_path_with_weights_is_a_given_teacher(workdir):
    own = {}
    exec(OWN_DENOISERS, own)  # the user's class, to write its weights as the user would
    torch.manual_seed(5)
    save_file(own["TinyDenoiser"]((1, 8, 8)).state_dict(), "teacher.safetensors")
    teacher = {"model": "own_denoisers:TinyDenoiser", "weights": "teacher.safetensors", "process": "diffusion",
               "prediction": "eps"}
    recipe, results = run(steps_recipe(teacher, {"name": "progressive", "options": {"start_steps": 4}}),
                          workdir / "run")
    assert results["details"]["teacher"]["given"] == "teacher.safetensors"
    assert results["details"]["teacher"]["prediction"] == "eps" and not (workdir / "run" / "teacher").exists()
    given = build_diffusion_model(recipe.teacher, load_generative_data("digits")).net.module.state_dict()
    fresh = own["TinyDenoiser"]((1, 8, 8)).state_dict()  # another seed: differs from the file
    torch.manual_seed(5)
    expected = own["TinyDenoiser"]((1, 8, 8)).state_dict()
    assert all(torch.equal(given[k], expected[k]) for k in expected)
    assert not all(torch.equal(given[k], fresh[k]) for k in fresh)
    assert [r["steps"] for r in results["rows"] if r["model"].startswith("student")] == [1, 2]


def test_a_conditional_module_without_weights_is_trained_by_the_run(workdir):
    teacher = {"model": "own_denoisers:LabelledDenoiser", "conditional": True, "cfg_scale": 2.0,
               "train": {"steps": 3, "epochs": None, "batch_size": 16, "progress": False}}
    _, results = run(steps_recipe(teacher, {"name": "reflow", "options": {"pairs": 40}}, None), workdir / "run")
    assert (workdir / "run" / "teacher").is_dir() and "given" not in results["details"]["teacher"]
    teacher_rows = [r for r in results["rows"] if r["model"].startswith("teacher")]
    assert teacher_rows and all(r["nfe"] == 2 * r["steps"] for r in teacher_rows)  # guided: two calls per step


def test_a_zoo_teacher_with_weights_is_given_and_its_step_conditioned_students_still_build(workdir):
    """distill's own network from a weights file: loaded into the teacher, while a step-conditioned student's
    fresh network (which has one more input) is built empty and takes the teacher's weights later."""
    splits = load_generative_data("8gaussians", {"n_train": 64, "n_test": 32})
    recipe = load_recipe({"name": "t", "task": "steps", "data": {"name": "8gaussians"},
                          "teacher": {"model": "mlp", "options": {"hidden": 8, "depth": 1},
                                      "weights": "mlp.safetensors"}, "method": {"name": "shortcut"}})
    torch.manual_seed(3)
    save_file(build_diffusion_net(recipe.teacher.model_copy(update={"weights": None}), splits).state_dict(),
              "mlp.safetensors")
    given = build_diffusion_model(recipe.teacher, splits).net.state_dict()
    torch.manual_seed(3)
    expected = build_diffusion_net(recipe.teacher.model_copy(update={"weights": None}), splits).state_dict()
    assert given.keys() == expected.keys() and all(torch.equal(given[k], expected[k]) for k in given)
    assert "embed.step.0.weight" in build_diffusion_net(recipe.teacher, splits, step_conditioned=True).state_dict()


@pytest.mark.parametrize("teacher, error, message", [
    ({"model": "own_denoisers:Flat"}, ConfigError, r"returns \(2, 64\) for inputs of shape \(2, 1, 8, 8\)"),
    ({"model": "own_denoisers:TinyDenoiser", "weights": "nowhere.safetensors"}, CheckpointError, "no weights file"),
    ({"model": "own_denoisers:TinyDenoiser", "conditional": True}, ConfigError, "cannot denoise the data's inputs"),
])
def test_a_module_that_does_not_fit_is_refused_before_anything_runs(workdir, teacher, error, message):
    recipe = load_recipe(steps_recipe(teacher, {"name": "progressive", "options": {"start_steps": 4}}))
    with pytest.raises(error, match=message):
        get_task("steps").run(recipe, Run(workdir / "run", recipe))
    assert not [p for p in (workdir / "run").iterdir() if p.is_dir()]


def test_unlabelled_images_from_a_folder_run_steps_and_score(workdir):
    write_images(workdir / "images" / "train", 24)
    write_images(workdir / "images" / "test", 12, seed=1)
    data = {"name": "image_folder", "options": {"train": "images/train", "test": "images/test", "unlabelled": True}}
    teacher = {"model": "own_denoisers:TinyDenoiser", "process": "flow", "prediction": "velocity",
               "train": {"steps": 3, "epochs": None, "batch_size": 8, "progress": False}}
    recipe, results = run(steps_recipe(teacher, {"name": "progressive", "options": {"start_steps": 4}}, data),
                          workdir / "steps")
    assert set(results["details"]["floor"]) == {"swd", "mmd"}  # no labels: pixel metrics, no feature classifier
    assert results["details"]["scored_samples"] == 6 and "classifier_accuracy" not in results["details"]
    score = {"name": "t", "task": "score", "data": data, "prior": {**teacher, "solver": "euler", "steps": 2},
             "guidance": {"name": "sds"}, "object": {"kind": "points", "count": 6},
             "train": {"steps": 2, "batch_size": 3, "progress": False}}
    _, results = run(score, workdir / "score")
    assert results["rows"][-1]["model"] == "sds" and np.isfinite(results["rows"][-1]["swd"])


def test_unlabelled_arrays_load_without_labels_and_only_where_labels_are_not_needed(workdir):
    rng = np.random.default_rng(0)
    np.save("train.npy", rng.random((10, 1, 8, 8), dtype=np.float32))
    np.savez("test.npz", x=rng.random((4, 1, 8, 8), dtype=np.float32))
    splits = load_dataset("arrays", train="train.npy", test="test.npz", unlabelled=True)
    assert splits.num_classes == 0 and splits.input_shape == (1, 8, 8) and len(splits.test) == 4
    assert bool((splits.train.y == IGNORE_INDEX).all())
    with pytest.raises(DistillError, match="set unlabelled: true"):
        load_dataset("arrays", train="train.npy", test="test.npz")
    data = {"name": "arrays", "options": {"train": "train.npy", "test": "test.npz", "unlabelled": True}}
    conditional = load_recipe(steps_recipe({"model": "unet", "conditional": True},
                                           {"name": "progressive", "options": {"start_steps": 4}}, data))
    with pytest.raises(ConfigError, match="conditional.*is true, but the data has no labels"):
        get_task("steps").run(conditional, Run(workdir / "run", conditional))
    classification = load_recipe({"name": "c", "task": "classification", "data": data,
                                  "teacher": {"model": "mlp"}, "student": {"model": "mlp"},
                                  "distill": {"pairs": [{"loss": "kd"}]}, "train": {"steps": 1}})
    with pytest.raises(DistillError, match="classification needs labelled data"):
        load_recipe_data(classification)


def test_a_folder_without_classes_points_to_unlabelled(workdir):
    write_images(workdir / "flat", 4)
    with pytest.raises(DistillError, match="class sub-folder.*set unlabelled: true"):
        load_dataset("image_folder", train="flat", test="flat")
    with pytest.raises(ConfigError, match="unlabelled must be true or false"):
        load_dataset("image_folder", train="flat", test="flat", unlabelled="yes")
