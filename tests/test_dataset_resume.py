"""A killed condensation (or expert training) resumed with --resume makes the same set as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from distill.errors import CheckpointError
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.tasks.dataset.condense import class_bank, network_factory
from distill.tasks.dataset.experts import train_expert_trajectories
from distill.tasks.dataset.methods import CONDENSERS
from distill.tasks.dataset.objectives import ExpertObjective
from distill.tasks.dataset.run import condense_seed, expert_trajectories


class Killed(Exception):
    """Stands for the process being killed."""


def recipe_for(method: str, iterations: int = 6):
    options = {"dm": {"real_per_class": 16},
               "mtt": {"syn_steps": 3, "expert_epochs": 1, "max_start_epoch": 2, "lr": 10.0}}[method]
    return load_recipe({"name": "resume", "task": "dataset", "data": {"name": "digits"},
                        "network": {"width": 8, "depth": 2}, "progress": False,
                        "method": {"name": method, "ipc": 1, "iterations": iterations, "checkpoint_every": 2,
                                   "dsa": True, "options": options,
                                   "experts": {"count": 2, "epochs": 3, "batch_size": 256}}})


def kill_after(monkeypatch, cls, method: str, calls: int = 10**9) -> list:
    """Make ``cls.method`` raise on its call number ``calls + 1``; the list grows by one per call made."""
    original, seen = getattr(cls, method), []

    def counted(self, *args, **kwargs):
        if len(seen) == calls:
            raise Killed
        seen.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, counted)
    return seen


@pytest.mark.parametrize("method", ["dm", "mtt"])
def test_a_killed_condensation_resumes_to_the_uninterrupted_set(tmp_path, monkeypatch, method):
    recipe, bank = recipe_for(method), class_bank("digits")
    whole = Run(tmp_path / "whole", recipe)
    factory = network_factory("convnet", bank, width=8, depth=2)
    trajectories = expert_trajectories(recipe, whole, bank, factory, None) if method == "mtt" else None
    expected = condense_seed(recipe, whole, bank, 0, trajectories)

    with monkeypatch.context() as patch:
        kill_after(patch, CONDENSERS.get(method), "iteration", 5)  # killed in iteration 6, last checkpoint at 4
        with pytest.raises(Killed):
            condense_seed(recipe, Run(tmp_path / "killed", recipe), bank, 0, trajectories)
    assert not (tmp_path / "killed" / "synthetic_seed0.safetensors").exists()
    with monkeypatch.context() as patch:
        calls = kill_after(patch, CONDENSERS.get(method), "iteration")
        resumed = condense_seed(recipe, Run(tmp_path / "killed", recipe, resume=True), bank, 0, trajectories)
    assert len(calls) == 2  # iterations 5 and 6 only: it went on from the checkpoint of iteration 4

    assert torch.equal(resumed["synthetic"].images, expected["synthetic"].images)
    assert resumed["history"] == expected["history"] and len(resumed["history"]) == 6
    if method == "mtt":
        assert expected["history"][-1]["syn_lr"] == resumed["history"][-1]["syn_lr"]


def test_resume_refuses_a_checkpoint_of_another_recipe(tmp_path, monkeypatch):
    recipe, bank = recipe_for("dm"), class_bank("digits")
    with monkeypatch.context() as patch:
        kill_after(patch, CONDENSERS.get("dm"), "iteration", 3)
        with pytest.raises(Killed):
            condense_seed(recipe, Run(tmp_path, recipe), bank, 0, None)
    changed = load_recipe({**recipe.model_dump(mode="json"),
                           "method": {**recipe.method.model_dump(mode="json"), "init": "noise"}})
    with pytest.raises(CheckpointError, match="another recipe"):
        condense_seed(changed, Run(tmp_path, changed, resume=True), bank, 0, None)
    # without --resume the stale checkpoint is never read: the condensation starts afresh
    assert len(condense_seed(changed, Run(tmp_path, changed), bank, 0, None)["history"]) == 6


def test_a_killed_expert_resumes_to_the_uninterrupted_trajectory(tmp_path, monkeypatch):
    bank, recipe = class_bank("digits"), recipe_for("dm")

    def network():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def experts(run):
        return train_expert_trajectories(bank, network, experts=2, epochs=3, batch_size=512,
                                         generator=torch.Generator().manual_seed(0), run=run)

    expected = experts(Run(tmp_path / "whole", recipe))
    with monkeypatch.context() as patch:
        per_epoch = -(-len(bank.labels) // 512)
        kill_after(patch, ExpertObjective, "forward", 3 * per_epoch + per_epoch + 1)  # expert 1 dies in epoch 2
        with pytest.raises(Killed):
            experts(Run(tmp_path / "killed", recipe))
    with monkeypatch.context() as patch:
        calls = kill_after(patch, ExpertObjective, "forward")
        resumed = experts(Run(tmp_path / "killed", recipe, resume=True))
    assert len(calls) == 2 * per_epoch  # expert 0 was finished; expert 1 went on after its first epoch
    assert all(torch.equal(a, b) for a, b in zip(resumed, expected)) and len(resumed) == 2
