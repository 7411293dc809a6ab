"""Every score-distillation recipe in recipes/score/ runs end to end from the CLI at a tiny budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from distill.cli import main
from distill.data.toys import TOYS

RECIPES = sorted(Path(__file__).parents[1].glob("recipes/score/*.yaml"))


def tiny_overrides(path: Path) -> list[str]:
    """--set overrides that make ``path`` run in a few seconds."""
    tree = yaml.safe_load(path.read_text())
    overrides = ["train.steps=3", "train.batch_size=4", "train.progress=false", "prior.train.steps=3",
                 "prior.train.batch_size=4", "prior.train.progress=false", "prior.steps=2"]
    if "views" in tree:
        overrides += ["views.count=6", "views.size=8", "views.held_out=2", "views.surface_points=128",
                      "object.count=16", "object.resolution=6"]
        if tree["prior"].get("kind") == "trained":
            overrides += ["prior.options.channels=[8,16]"]
    elif tree["data"]["name"] in TOYS:
        overrides += ["data.options.n_train=500", "data.options.n_test=200", "object.count=64",
                      "prior.options.hidden=16", "prior.options.depth=1"]
    else:
        overrides += ["object.count=20", "evaluate.classifier.train.steps=5",
                      "evaluate.classifier.train.epochs=null", "evaluate.classifier.train.progress=false"]
        if not tree["prior"].get("model", "").startswith("diffusers:"):  # a diffusers folder is given whole
            overrides += ["prior.options.channels=[8,16]"]
    return overrides


def build_prior_folder(recipe: Path, folder: Path, monkeypatch) -> None:
    """A recipe whose prior is a diffusers folder (the README says how to make it) runs from a tiny random
    one built here, in the current directory the recipe's relative path starts from."""
    model = yaml.safe_load(recipe.read_text())["prior"].get("model", "")
    if model.startswith("diffusers:"):
        pytest.importorskip("diffusers")
        from diffusers_fixtures import save_folder

        monkeypatch.chdir(folder)
        save_folder(folder / model.removeprefix("diffusers:"), "ddpm")


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_score_recipe_runs(recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    build_prior_folder(recipe, tmp_path, monkeypatch)
    args = ["run", str(recipe), "--no-progress", "--out", str(tmp_path / "run")]
    for item in tiny_overrides(recipe):
        args += ["--set", item]
    assert main(args) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    guidance = yaml.safe_load(recipe.read_text())["guidance"]["name"]
    assert results["task"] == "score" and results["rows"][-1]["model"] == guidance
    metric = "chamfer" if "chamfer" in results["rows"][-1] else ("swd" if "swd" in results["rows"][-1] else "fd")
    assert all(math.isfinite(row[metric]) for row in results["rows"])
