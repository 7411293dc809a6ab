"""Every recipe shipped in recipes/ runs end to end (at a tiny step budget)."""

from pathlib import Path

import pytest
import yaml

from distill.cli import main
from distill.losses import LOSSES

RECIPES = sorted(p for p in Path(__file__).parents[1].glob("recipes/**/*.yaml") if p.parent.name != "steps")


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs(recipe, tmp_path):
    tree = yaml.safe_load(recipe.read_text())
    overrides = ["train.epochs=null", "train.steps=12", "train.eval_every=6"]
    if "transfer_size" in tree["data"].get("options", {}):
        overrides.append("data.options.transfer_size=200")
    if isinstance(tree["teacher"], dict) and "teachers" in tree["teacher"]:
        for i in range(len(tree["teacher"]["teachers"])):
            overrides += [f"teacher.teachers.{i}.train.epochs=null", f"teacher.teachers.{i}.train.steps=12"]
    elif isinstance(tree["teacher"], dict):
        overrides += ["teacher.train.epochs=null", "teacher.train.steps=12", "teacher.train.checkpoint_every=0"]
    args = ["run", str(recipe), "--no-progress", "--out", str(tmp_path)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    assert (tmp_path / "results.json").exists()


def test_every_method_has_a_recipe():
    used = {pair["loss"] for p in RECIPES for pair in yaml.safe_load(p.read_text())["distill"]["pairs"]}
    assert set(LOSSES.names()) - used == set()
