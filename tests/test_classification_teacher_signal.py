"""``distill.teacher_signal: cache``: a classification recipe distils from the dense teacher cache
(``distill.signals.CachedTeacher``) and trains the student the live teacher trains; a cache is refused
where it cannot serve (augmented inputs, self-distillation, taps that pick an element).

Tolerance as in test_engine_cached_teacher.py: the cache stores float16, so every student weight lies
within 0.1 % of the largest distance the live run moved a weight from its initialisation.
"""

from __future__ import annotations

import pytest
import torch

from distill.engine.checkpoint import load_weights_file
from distill.errors import ConfigError, DistillError
from distill.experiment import get_task, load_recipe
from distill.experiment.runner import Run
from distill.signals import CachedTeacher
from distill.tasks.classification.run import build_student, load_recipe_data

TREE = {
    "name": "cached",
    "data": {"name": "digits"},
    "teacher": {"model": "convnet", "options": {"channels": [8, 8, 8]},
                "train": {"steps": 30, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "progress": False}},
    "student": {"model": "mlp", "options": {"hidden": [16]}},
    "distill": {"pairs": [{"loss": "kd", "options": {"temperature": 2.0}},
                          {"student": "fc1", "teacher": "conv3", "loss": "sp", "weight": 10.0}]},
    "train": {"steps": 20, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "progress": False},
    "baselines": {"augments": []},
}


def _student_weights(tmp_path, name: str, *overrides: str) -> torch.Tensor:
    recipe = load_recipe(TREE, list(overrides))
    get_task("classification").run(recipe, Run(tmp_path / name, recipe))
    return torch.cat([w.flatten() for w in load_weights_file(tmp_path / name / "student.safetensors").values()])


def test_a_cached_teacher_recipe_trains_the_student_the_live_teacher_trains(tmp_path):
    recipe = load_recipe(TREE)
    initial = torch.cat([p.detach().flatten() for p in build_student(recipe, load_recipe_data(recipe)).state_dict().values()])
    live = _student_weights(tmp_path, "live")
    cached = _student_weights(tmp_path, "cached", "distill.teacher_signal=cache")
    moved = (live - initial).abs().max()
    assert moved > 0.05
    assert (cached - live).abs().max() <= 1e-3 * moved
    cache = CachedTeacher(tmp_path / "cached" / "teacher_cache")  # holds what the pairs tap: output and conv3
    x = load_recipe_data(recipe).train[0][0].unsqueeze(0)
    assert cache(x).shape == (1, 10)
    with pytest.raises(DistillError, match="not in the teacher cache"):
        cache(x + 0.01)  # an augmented input is refused, not served a stale target
    assert not (tmp_path / "live" / "teacher_cache").exists()


@pytest.mark.parametrize("overrides,message", [
    (["distill.augment=mixup"], r"serves only the exact inputs it cached.*distill.augment: none"),
    (["distill.augment=jitter"], r"serves only the exact inputs it cached"),
    (["distill.pairs.1.teacher=conv3[0]"], r"stores whole tensors"),
    (["teacher=self"], r"needs a separate teacher"),
    (["data.student_channels=[0]"], r"cross-sensor"),
])
def test_a_teacher_cache_is_refused_where_it_cannot_serve(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(TREE, ["distill.teacher_signal=cache", *overrides])
    load_recipe(TREE, overrides)  # the live teacher accepts each of them


def test_teacher_signal_names_its_choices():
    with pytest.raises(ConfigError, match="teacher_signal"):
        load_recipe(TREE, ["distill.teacher_signal=disk"])


def test_a_teacher_cache_is_reused_by_a_run_with_the_same_teacher_and_rebuilt_for_another(tmp_path, monkeypatch):
    import distill.tasks.classification.run as run_module

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))  # not the entries of the other tests
    builds = []
    build = run_module.build_teacher_cache
    monkeypatch.setattr(run_module, "build_teacher_cache", lambda *a, **k: builds.append(a[2]) or build(*a, **k))
    _student_weights(tmp_path, "first", "distill.teacher_signal=cache", "train.steps=2")
    _student_weights(tmp_path, "second", "distill.teacher_signal=cache", "train.steps=2")
    assert len(builds) == 1
    assert (tmp_path / "first" / "teacher_cache").resolve() == (tmp_path / "second" / "teacher_cache").resolve()
    _student_weights(tmp_path, "other", "distill.teacher_signal=cache", "train.steps=2", "teacher.train.seed=5")
    assert len(builds) == 2  # another teacher: its own entry
    assert (tmp_path / "other" / "teacher_cache").resolve() != (tmp_path / "first" / "teacher_cache").resolve()
    _student_weights(tmp_path, "other_taps", "distill.teacher_signal=cache", "train.steps=2",
                     "distill.pairs.1.teacher=conv2")
    assert len(builds) == 3


def test_placement_cache_is_the_teacher_cache():
    """``train.teacher_placement: cache`` selects the same cache, with the same refusals."""
    assert load_recipe(TREE, ["train.teacher_placement=cache"]).distill.teacher_signal == "cache"
    with pytest.raises(ConfigError, match=r"serves only the exact inputs it cached"):
        load_recipe(TREE, ["train.teacher_placement=cache", "distill.augment=mixup"])
    assert load_recipe(TREE, []).distill.teacher_signal == "live"
