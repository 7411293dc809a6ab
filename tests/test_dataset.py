"""The dataset family end to end: recipes, condense() from the library, a full run, eval with another network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distill.cli import main
from distill.errors import ConfigError, DistillError
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.experiment.tasks import get_task
from distill.tasks.dataset.condense import class_bank, condense
from distill.tasks.dataset.run import condense_seed
from distill.tasks.dataset.synthetic import SyntheticSet

RECIPES = sorted(Path(__file__).parents[1].glob("recipes/dataset/*.yaml"))


def tiny_recipe(**method):
    tree = {"name": "dd_test", "task": "dataset", "data": {"name": "digits"}, "network": {"width": 8, "depth": 2},
            "method": {"name": "dm", "ipc": 2, "iterations": 4, "options": {"real_per_class": 16}, **method},
            "evaluate": {"networks": 2, "epochs": 30, "lr": 0.05, "architectures": ["convnet", "mlp"],
                         "baseline_ipcs": [1], "full_epochs": 15, "seeds": [0, 1]},
            "progress": False}
    return load_recipe(tree)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_bundled_dataset_recipes_load(path):
    recipe = load_recipe(path)
    assert recipe.task == "dataset" and recipe.data.name == "mnist" and path.stem.startswith(recipe.method.name)
    assert path.stem.endswith(f"ipc{recipe.method.ipc}")


def test_recipe_is_checked_whole_when_it_loads():
    with pytest.raises(DistillError, match="Did you mean 'dm'"):
        tiny_recipe(name="dmm")
    with pytest.raises(DistillError, match="Did you mean 'real_per_class'"):
        tiny_recipe(options={"real_per_clas": 4})
    with pytest.raises(DistillError, match="no default loops for ipc=2"):
        tiny_recipe(name="dc")
    with pytest.raises(DistillError, match="mtt option syn_steps must be an integer >= 1"):
        tiny_recipe(name="mtt", options={"syn_steps": 0})
    with pytest.raises(DistillError, match="trained by distill"):
        tiny_recipe(name="mtt", options={"trajectories": "x.safetensors"})
    assert tiny_recipe(name="dc", options={"outer_loop": 2, "inner_loop": 1}).method.options["outer_loop"] == 2
    tree = tiny_recipe().model_dump(mode="json")
    tree["evaluate"]["architectures"] = ["mlp"]  # the condensing convnet left out: was a KeyError after condensing
    with pytest.raises(DistillError, match="leaves out the condensing network 'convnet'"):
        load_recipe(tree)


def test_condense_from_the_library():
    result = condense("digits", "dm", ipc=1, iterations=6, width=8, depth=2, options={"real_per_class": 16})
    assert result.synthetic.images.shape == (10, 1, 8, 8) and result.synthetic.labels.tolist() == list(range(10))
    assert len(result.history) == 6 and all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert result.iterations_per_second > 0
    again = condense("digits", "dm", ipc=1, iterations=6, width=8, depth=2, options={"real_per_class": 16})
    assert torch.equal(again.synthetic.images, result.synthetic.images)  # seeded
    start = condense("digits", "dm", ipc=1, iterations=1, width=8, depth=2, options={"real_per_class": 16, "lr": 0.0})
    assert not torch.equal(start.synthetic.images, result.synthetic.images)  # the iterations moved the images
    with pytest.raises(ConfigError, match="init must be"):
        condense("digits", "dm", ipc=1, init="zeros")


def test_condense_mtt_trains_its_experts():
    result = condense("digits", "mtt", ipc=1, iterations=3, width=8, depth=2, dsa=False,
                      experts={"experts": 2, "epochs": 3, "batch_size": 128},
                      options={"syn_steps": 3, "expert_epochs": 1, "max_start_epoch": 2, "lr": 10.0})
    assert result.synthetic.images.shape == (10, 1, 8, 8) and {"loss", "syn_lr"} <= set(result.history[0])


def test_full_run_scores_the_set_beside_its_baselines(tmp_path):
    recipe = tiny_recipe()
    task = get_task("dataset")
    table = task.run(recipe, Run(tmp_path / "run", recipe))
    folder = tmp_path / "run"
    for name in ("results.json", "report.md", "synthetic.png", "accuracy_vs_ipc.png", "synthetic_seed0.safetensors",
                 "synthetic_seed1.safetensors", "full_data_teacher.safetensors"):
        assert (folder / name).exists(), name
    details = json.loads((folder / "results.json").read_text())["details"]
    dm = details["sets"]["dm"]["convnet"]
    assert len(dm["false"]["accuracies"]) == 4  # 2 networks × 2 distillation seeds
    assert set(details["sets"]) == {"dm", "random", "herding"} and details["full"]["mean"] > 50
    assert details["ranking"]["false"]["hard"]["improvement_over_random"] == pytest.approx(
        dm["false"]["mean"] - details["sets"]["random"]["convnet"]["false"]["mean"], abs=1e-6)
    assert details["condensation"][0]["iterations_per_second"] > 0
    sets = [row["set"] for row in table.rows]
    assert sets.count("dm") == 2 and sets[-1] == "full training set"
    saved = SyntheticSet.load(folder / "synthetic_seed0.safetensors")
    assert saved.ipc == 2 and saved.num_classes == 10

    again = task.evaluate(folder, recipe, network="mlp")
    first_seed = details["sets"]["dm"]["mlp"]["false"]["accuracies"][:2]  # seed 0's networks, trained again
    mean, std = sum(first_seed) / 2, abs(first_seed[0] - first_seed[1]) / 2
    assert [row["augment"] for row in again.rows] == ["none", "DSA"] and again.rows[0]["mlp"] == f"{mean:.1f} ± {std:.1f}"
    other = tmp_path / "other.safetensors"
    SyntheticSet(torch.zeros(6, 1, 4, 4), 3).save(other)
    with pytest.raises(ConfigError, match="holds 3 classes"):
        task.evaluate(folder, recipe, weights=other)
    with pytest.raises(ConfigError, match="--network 'vit'"):
        task.evaluate(folder, recipe, network="vit")

    assert main(["eval", str(folder), "--network", "mlp"]) == 0

    bank = class_bank("digits")
    assert condense_seed(recipe, Run(folder, recipe), bank, 0, None)["history"] == []  # the stored set is reused
    changed = load_recipe({**recipe.model_dump(mode="json"), "method": {**recipe.method.model_dump(mode="json"),
                                                                         "iterations": 2}})
    assert len(condense_seed(changed, Run(folder, changed), bank, 0, None)["history"]) == 2  # not a stale one


def test_soft_labels_are_reported_apart(tmp_path):
    recipe = load_recipe({**tiny_recipe().model_dump(mode="json"), "soft_labels": {"enabled": True},
                          "evaluate": {"networks": 1, "epochs": 10, "architectures": ["convnet"], "augment": [False],
                                       "baseline_ipcs": [], "full_epochs": 2, "seeds": [0]}})
    table = get_task("dataset").run(recipe, Run(tmp_path / "run", recipe))
    soft = [row for row in table.rows if row["labels"] == "teacher soft"]
    assert [row["set"] for row in soft] == ["dm", "random"]
    details = json.loads((tmp_path / "run" / "results.json").read_text())["details"]
    assert set(details["ranking"]["false"]) == {"hard", "soft"}
