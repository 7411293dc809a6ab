"""Bring your own models: import paths, model libraries, Hugging Face folders and weights files, from
the library and from a recipe, and one clear error for each bad source before anything trains."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from distill.cli import main
from distill.distiller import Distiller
from distill.errors import CheckpointError, ConfigError
from distill.models import build_model
from distill.models.source import build_network, carries_weights, check_forward
from distill.models.weights import load_weights
from distill.tasks.classification.metrics import evaluate_classifier

SHAPE, CLASSES = (1, 8, 8), 10  # sklearn digits

# The README's "Bring your own models" section: its models file and its recipe.
_README = (Path(__file__).parents[1] / "README.md").read_text()
README_MODELS = next(b for b in re.findall(r"```python\n(.*?)```", _README, re.S) if "# my_models.py" in b)
README_RECIPE = next(b for b in re.findall(r"```yaml\n(.*?)```", _README, re.S) if "# own_models.yaml" in b)
README_BARE = next(b for b in re.findall(r"```yaml\n(.*?)```", _README, re.S) if "# bare.yaml" in b)

MY_MODELS = '''
from torch import nn


class Teacher(nn.Module):
    """A small CNN for 8x8 images."""

    def __init__(self, width=8, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def build_student(num_classes, input_shape, hidden=16):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def not_a_model():
    return "a string"


def fixed_input():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A current directory holding ``my_models.py`` (and a package ``mypkg.nets``), imported afresh."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text("from my_models import Teacher as Net\n")
    (tmp_path / "broken_dep.py").write_text("import not_installed_anywhere_xyz\n")
    for name in ("my_models", "readme_models", "mypkg", "mypkg.nets", "broken_dep"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


# ---- import paths --------------------------------------------------------------------------------


def test_import_path_builds_a_function_or_class_with_options_and_the_datas_sizes(workdir):
    student = build_network("my_models:build_student", SHAPE, CLASSES, {"hidden": 5})
    assert student[1].out_features == 5 and student(torch.zeros(2, *SHAPE)).shape == (2, CLASSES)
    teacher = build_network("mypkg.nets:Net", SHAPE, 3, {"width": 4})  # a class in a package module
    assert teacher.head.in_features == 16 and teacher(torch.zeros(2, *SHAPE)).shape == (2, 3)
    assert build_network("my_models:Teacher", SHAPE, CLASSES, {"num_classes": 4}).head.out_features == 4
    assert not carries_weights("my_models:Teacher")


def test_zoo_names_are_unchanged(workdir):
    torch.manual_seed(0)
    ours = build_network("convnet", SHAPE, CLASSES, {"channels": [4, 4, 4]})
    torch.manual_seed(0)
    zoo = build_model("convnet", SHAPE, CLASSES, channels=[4, 4, 4])
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), zoo.state_dict().values()))
    with pytest.raises(ConfigError, match=r"'torchvision.models:resnet18'"):  # a dotted path gets the colon form
        build_network("torchvision.models.resnet18", SHAPE, CLASSES, {})


@pytest.mark.parametrize("name, message", [
    ("no_such_module_abc:build", r"no module 'no_such_module_abc' in the current directory"),
    ("broken_dep:build", r"imports 'not_installed_anywhere_xyz', which is not installed"),
    ("my_models:build_studnt", r"'my_models' .*has no 'build_studnt'\. Did you mean 'build_student'"),
    ("my_models:not_a_model", r"returned a builtins.str, not a torch.nn.Module"),
    ("my_models:build_student", r"cannot be built with options .*'depth'"),
])
def test_a_bad_import_path_names_what_failed(workdir, name, message):
    options = {"depth": 3} if name == "my_models:build_student" else {}
    with pytest.raises(ConfigError, match=message):
        build_network(name, SHAPE, CLASSES, options)


def test_the_dummy_pass_names_an_input_shape_the_model_cannot_take(workdir):
    model = build_network("my_models:fixed_input", SHAPE, CLASSES, {})
    with pytest.raises(ConfigError, match=r"the student 'x' cannot take the data's inputs of shape \(1, 8, 8\)"):
        check_forward(model, torch.zeros(2, *SHAPE), CLASSES, "the student 'x'")
    with pytest.raises(ConfigError, match=r"returns \(2, 3\) .* 10 classes"):
        check_forward(build_network("my_models:Teacher", SHAPE, 3, {}), torch.zeros(2, *SHAPE), CLASSES, "it")


# ---- weights files -------------------------------------------------------------------------------


def test_weights_from_safetensors_or_a_pt_state_dict(workdir):
    trained = build_network("my_models:Teacher", SHAPE, CLASSES, {})
    save_file(trained.state_dict(), "teacher.safetensors")
    torch.save(trained.state_dict(), "teacher.pt")
    for path in ("teacher.safetensors", "teacher.pt"):
        fresh = load_weights(build_network("my_models:Teacher", SHAPE, CLASSES, {}), path)
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))


def test_weights_that_do_not_fit_are_named(workdir):
    torch.save(build_network("my_models:Teacher", SHAPE, CLASSES, {"width": 6}).state_dict(), "wide.pt")
    torch.save({"features.0.weight": torch.zeros(1)}, "other.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": torch.tensor(3)}, "nested.pt")
    torch.save(torch.nn.Linear(2, 2), "pickled_module.pt")
    teacher = build_network("my_models:Teacher", SHAPE, CLASSES, {})
    with pytest.raises(CheckpointError, match=r"features\.0\.weight \(6, 1, 3, 3\) in the file but \(8, 1, 3, 3\)"):
        load_weights(teacher, "wide.pt")
    with pytest.raises(CheckpointError, match=r"missing \['features\.0\.bias', 'head\.bias', 'head\.weight'\]"):
        load_weights(teacher, "other.pt")
    with pytest.raises(CheckpointError, match=r"entries \['state_dict'\] hold mappings"):
        load_weights(teacher, "nested.pt")
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        load_weights(teacher, "pickled_module.pt")
    with pytest.raises(CheckpointError, match=r"no weights file missing\.pt"):
        load_weights(teacher, "missing.pt")


# ---- model libraries -----------------------------------------------------------------------------


def test_torchvision_builds_untrained_architectures():
    pytest.importorskip("torchvision")
    model = build_network("torchvision:resnet18", (3, 32, 32), CLASSES, {})
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, CLASSES)
    with pytest.raises(ConfigError, match="never downloads"):
        build_network("torchvision:resnet18", (3, 32, 32), CLASSES, {"weights": "IMAGENET1K_V1"})


def test_timm_builds_untrained_architectures_for_the_datas_channels():
    pytest.importorskip("timm")
    model = build_network("timm:resnet18", SHAPE, CLASSES, {})
    assert model(torch.zeros(2, *SHAPE)).shape == (2, CLASSES)
    with pytest.raises(ConfigError, match="never downloads"):
        build_network("timm:resnet18", SHAPE, CLASSES, {"pretrained": True})


@pytest.mark.parametrize("prefix, extra", [("torchvision", "distill[torchvision]"), ("timm", "distill[timm]")])
def test_a_missing_library_names_the_extra_to_install(monkeypatch, prefix, extra):
    monkeypatch.setitem(sys.modules, prefix, None)  # import of it fails as when it is not installed
    with pytest.raises(ConfigError, match=rf"'{prefix}:resnet18' needs the {prefix} package.*pip install '{re.escape(extra)}'"):
        build_network(f"{prefix}:resnet18", (3, 32, 32), CLASSES, {})


def _fake_library(monkeypatch, name: str, **attributes) -> None:
    """A stand-in module ``name`` with ``attributes``, imported in place of the real library."""
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_library_calls_ask_for_no_download_and_the_datas_sizes(monkeypatch):
    """The calls that reach torchvision and timm (stand-ins here, as neither is installed in the test venv)."""
    seen = []

    def record(*args, **kwargs):
        seen.append((args, kwargs))
        return torch.nn.Linear(1, 1)

    _fake_library(monkeypatch, "timm", is_model=lambda n: n == "resnet18", list_models=lambda: ["resnet18"],
                  create_model=record)
    build_network("timm:resnet18", SHAPE, CLASSES, {"drop_rate": 0.1})
    assert seen[-1] == (("resnet18",), {"num_classes": 10, "in_chans": 1, "drop_rate": 0.1, "pretrained": False})
    with pytest.raises(ConfigError, match=r"unknown timm model 'resnet81'.*'resnet18'"):
        build_network("timm:resnet81", SHAPE, CLASSES, {})
    models = types.SimpleNamespace(list_models=lambda: ["resnet18"], get_model=record)
    _fake_library(monkeypatch, "torchvision", models=models)
    build_network("torchvision:resnet18", (3, 32, 32), CLASSES, {})
    assert seen[-1] == (("resnet18",), {"weights": None, "num_classes": 10})


# ---- Hugging Face folders ------------------------------------------------------------------------


@pytest.fixture
def hf_folder(tmp_path):
    """A tiny randomly initialised ViT image classifier for 8x8 gray images, saved by save_pretrained."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=CLASSES)
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    return tmp_path / "vit"


def test_a_hugging_face_folder_gives_logits_to_taps_and_losses(hf_folder, tmp_path):
    teacher = build_network(f"hf:{hf_folder}", SHAPE, CLASSES, {})
    assert carries_weights(f"hf:{hf_folder}")
    x = torch.randn(4, *SHAPE)
    assert torch.equal(teacher(x), teacher.model(pixel_values=x).logits)
    student = build_model("mlp", SHAPE, CLASSES, hidden=[8])
    distiller = Distiller(student, teacher.eval(), {("output", "output"): "kd",
                                                    ("fc1", "model.vit.layernorm"): "rkd"})
    distiller(x)
    assert torch.isfinite(distiller.compute_losses()["total"])
    with pytest.raises(ConfigError, match=r"not a Hugging Face model folder \(no config.json\)"):
        build_network(f"hf:{tmp_path / 'nowhere'}", SHAPE, CLASSES, {})


# ---- recipes through the command line ------------------------------------------------------------

FAST = ["--set", "train.steps=20", "--set", "train.batch_size=32", "--no-progress"]


def _recipe(path, teacher: dict, student: dict) -> str:
    recipe = {"name": "own-models", "data": {"name": "digits"}, "teacher": teacher, "student": student,
              "distill": {"pairs": [{"loss": "kd", "options": {"temperature": 4.0, "alpha": 0.5}}]},
              "train": {"steps": 20, "batch_size": 32}, "baselines": {"augments": ["none"]}}
    path.write_text(json.dumps(recipe))
    return str(path)


def test_a_recipe_runs_a_given_teacher_from_weights_and_a_student_by_import_path(workdir, digits):
    trained = build_network("my_models:Teacher", SHAPE, CLASSES, {"width": 6})
    torch.save(trained.state_dict(), "teacher.pt")
    recipe = _recipe(workdir / "recipe.yaml", {"model": "my_models:Teacher", "options": {"width": 6},
                                               "weights": "teacher.pt"},
                     {"model": "my_models:build_student", "options": {"hidden": 12}})
    assert main(["run", recipe, *FAST, "--out", "run"]) == 0
    results = json.loads((workdir / "run" / "results.json").read_text())
    teacher_row, scratch_row, distilled_row = results["rows"]
    assert teacher_row["name"] == "teacher (my_models:Teacher, given)" and teacher_row["steps"] == 0
    assert not (workdir / "run" / "teacher").exists()  # never trained again
    assert teacher_row["acc"] == evaluate_classifier(trained.eval(), digits.test)["acc"]
    assert scratch_row["steps"] == distilled_row["steps"] == 20
    assert any("came with its weights (teacher.pt)" in note for note in results["notes"])
    assert "came with its weights" in (workdir / "run" / "report.md").read_text()
    assert main(["eval", "run"]) == 0  # the run's student is rebuilt from its import path


@pytest.mark.parametrize("teacher, student, message", [
    ({"model": "my_models:Teacher", "weights": "wide.pt"}, {"model": "mlp"}, r"features\.0\.weight \(6, 1, 3, 3\)"),
    ({"model": "my_models:Teacher"}, {"model": "my_models:fixed_input"},
     r"the student 'my_models:fixed_input' cannot take the data's inputs of shape \(1, 8, 8\)"),
    ({"model": "my_models:Teacher", "options": {"num_classes": 3}}, {"model": "mlp"}, r"returns \(2, 3\)"),
    ({"model": "my_models:nothing"}, {"model": "mlp"}, r"has no 'nothing'"),
])
def test_a_bad_model_source_fails_before_any_training(workdir, capsys, teacher, student, message):
    torch.save(build_network("my_models:Teacher", SHAPE, CLASSES, {"width": 6}).state_dict(), "wide.pt")
    assert main(["run", _recipe(workdir / "recipe.yaml", teacher, student), *FAST, "--out", "run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not any((workdir / "run" / stage).exists() for stage in ("teacher", "scratch", "distill"))


def test_a_recipe_distils_a_hugging_face_folder_without_training_it(hf_folder, workdir):
    recipe = _recipe(workdir / "recipe.yaml", {"model": f"hf:{hf_folder}"}, {"model": "mlp", "options": {"hidden": [8]}})
    assert main(["run", recipe, *FAST, "--set", "distill.pairs.0.options.alpha=1.0", "--out", "run"]) == 0
    results = json.loads((workdir / "run" / "results.json").read_text())
    assert results["rows"][0]["name"] == f"teacher (hf:{hf_folder}, given)" and results["rows"][0]["steps"] == 0
    assert any(f"came with its weights (hf:{hf_folder})" in note for note in results["notes"])


def test_the_readme_recipe_runs_its_own_models(workdir):
    (workdir / "readme_models.py").write_text(README_MODELS)
    torch.save(build_network("readme_models:Teacher", SHAPE, CLASSES, {"width": 32}).state_dict(), "teacher.pt")
    (workdir / "own_models.yaml").write_text(README_RECIPE.replace("my_models:", "readme_models:"))
    assert main(["run", "own_models.yaml", *FAST, "--out", "run"]) == 0
    rows = json.loads((workdir / "run" / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["teacher (readme_models:Teacher, given)",
                                         "student scratch (readme_models:small_student)",
                                         "student distilled (readme_models:small_student, kd+rkd)"]
    assert rows[0]["steps"] == 0 and rows[2]["steps"] == 20


def test_a_teacher_trained_from_an_import_path_is_cached_by_its_code(workdir, monkeypatch):
    recipe = _recipe(workdir / "recipe.yaml", {"model": "my_models:Teacher", "train": {"steps": 5, "batch_size": 32}},
                     {"model": "mlp"})

    def teacher_steps(out: str) -> int:
        monkeypatch.delitem(sys.modules, "my_models", raising=False)  # a new process imports the file afresh
        assert main(["run", recipe, *FAST, "--out", out]) == 0
        return json.loads((workdir / out / "results.json").read_text())["rows"][0]["steps"]

    assert (teacher_steps("first"), teacher_steps("again")) == (5, 0)
    (workdir / "my_models.py").write_text(MY_MODELS.replace("nn.ReLU(), nn.AdaptiveAvgPool2d", "nn.GELU(), "
                                                            "nn.AdaptiveAvgPool2d"))
    assert teacher_steps("edited") == 5  # same name and options, other code: trained again


def test_the_readme_bare_recipe_runs_on_own_arrays_with_the_default(workdir, digits):
    (workdir / "readme_models.py").write_text(README_MODELS)
    torch.save(build_network("readme_models:Teacher", SHAPE, CLASSES, {}).state_dict(), "teacher.pt")
    for name, split in (("train", digits.train), ("test", digits.test)):
        np.savez(f"{name}.npz", x=split.x.numpy(), y=split.y.numpy())
    (workdir / "bare.yaml").write_text(README_BARE.replace("my_models:", "readme_models:"))
    assert main(["run", "bare.yaml", *FAST, "--out", "run"]) == 0
    results = json.loads((workdir / "run" / "results.json").read_text())
    assert results["rows"][-1]["name"] == "student distilled (readme_models:small_student, kd, mixup)"
    assert any("function matching" in note for note in results["notes"])
