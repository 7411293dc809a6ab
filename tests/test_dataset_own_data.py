"""Dataset distillation on the user's own data: ``arrays`` and ``image_folder`` recipes end to end,
``condense`` on any map-style dataset, and a clean error for a truncated synthetic set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import TensorDataset

from distill.cli import main
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.tasks.dataset.condense import class_bank, condense
from distill.tasks.dataset.run import condense_seed, load_real

# 3 classes of 8×8 one-channel images: a bright row, column or diagonal on faint noise
CLASSES = ("row", "column", "diagonal")


def patterns(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 1, 8, 8)`` uint8 images and their labels, ``per_class`` of each class."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(3 * per_class, 1, 8, 8), dtype=np.uint8)
    labels = np.repeat(np.arange(3), per_class)
    for image, label in zip(images, labels):
        where = rng.integers(1, 7)
        if label == 0:
            image[0, where, :] = 250
        elif label == 1:
            image[0, :, where] = 250
        else:
            np.fill_diagonal(image[0], 250)
    return images, labels


def tiny_tree(data: dict) -> dict:
    """A dataset recipe that runs in seconds: a 2-block ConvNet of width 8, few iterations and epochs."""
    return {"name": "own", "task": "dataset", "data": data, "network": {"width": 8, "depth": 2},
            "method": {"name": "dm", "ipc": 2, "iterations": 3, "options": {"real_per_class": 8}},
            "evaluate": {"networks": 1, "epochs": 20, "lr": 0.05, "architectures": ["convnet"], "augment": [False],
                         "baseline_ipcs": [1], "full_epochs": 40, "seeds": [0]},
            "progress": False}


def run_recipe(tree: dict) -> dict:
    """``distill run`` on the recipe, then ``distill eval --network mlp``; the run's results."""
    Path("recipe.yaml").write_text(yaml.safe_dump(tree))
    assert main(["run", "recipe.yaml", "--no-progress", "--out", "run"]) == 0
    assert main(["eval", "run", "--network", "mlp"]) == 0
    return json.loads(Path("run/results.json").read_text())["details"]


def check_results(details: dict) -> None:
    assert set(details["sets"]) == {"dm", "random", "herding"}
    assert details["full"]["mean"] > 60  # three easy classes (chance: 33 %)
    assert "improvement_over_random" in details["ranking"]["false"]["hard"]
    assert set(details["curve"]["herding"]) == {"1", "2"}  # IPC 1 and the recipe's 2


def test_dataset_recipe_runs_on_npz_arrays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("train.npz", **dict(zip("xy", patterns(20, 0))))
    np.savez("test.npz", **dict(zip("xy", patterns(6, 1))))
    details = run_recipe(tiny_tree({"name": "arrays", "options": {"train": "train.npz", "test": "test.npz"}}))
    check_results(details)
    assert (tmp_path / "run" / "synthetic_seed0.safetensors").exists()


def write_png_folder(root: Path, per_class: int, seed: int) -> None:
    images, labels = patterns(per_class, seed)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(folder / f"{i}.png")  # mode "L": one channel


def test_dataset_recipe_runs_on_a_grayscale_png_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_png_folder(tmp_path / "train", 20, 0)
    write_png_folder(tmp_path / "test", 6, 1)
    tree = tiny_tree({"name": "image_folder", "options": {"train": "train", "test": "test"}})
    bank, test_images, _ = load_real(load_recipe(tree))
    assert bank.image_shape == (1, 8, 8) and test_images.shape[1:] == (1, 8, 8)  # one channel, as the files
    check_results(run_recipe(tree))


def test_recipe_limit_train_keeps_the_first_images_of_any_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("train.npz", **dict(zip("xy", patterns(20, 0))))
    np.savez("test.npz", **dict(zip("xy", patterns(6, 1))))
    tree = tiny_tree({"name": "arrays", "options": {"train": "train.npz", "test": "test.npz"}, "limit_train": 45})
    bank, _, _ = load_real(load_recipe(tree))
    assert len(bank.labels) == 45 and torch.equal(bank.labels, torch.tensor([0] * 20 + [1] * 20 + [2] * 5))


def test_a_changed_file_is_not_served_a_stale_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("train.npz", **dict(zip("xy", patterns(20, 0))))
    np.savez("test.npz", **dict(zip("xy", patterns(6, 1))))
    recipe = load_recipe(tiny_tree({"name": "arrays", "options": {"train": "train.npz", "test": "test.npz"}}))
    run = Run(tmp_path / "run", recipe)
    assert len(condense_seed(recipe, run, load_real(recipe)[0], 0, None)["history"]) == 3
    assert condense_seed(recipe, run, load_real(recipe)[0], 0, None)["history"] == []  # the stored set
    np.savez("train.npz", **dict(zip("xy", patterns(20, 5))))  # same path, other images
    assert len(condense_seed(recipe, run, load_real(recipe)[0], 0, None)["history"]) == 3


def test_recipe_refuses_an_unknown_data_name():
    with pytest.raises(Exception, match="'arrays'"):
        load_recipe(tiny_tree({"name": "cifar"}))


def test_condense_takes_any_map_style_dataset_of_pairs():
    images, labels = patterns(6, 0)
    x, y = torch.from_numpy(images).float() / 255, torch.from_numpy(labels)
    from_pairs = condense(TensorDataset(x, y), "dm", ipc=1, iterations=2, width=8, depth=2)
    from_tuple = condense((x, y), "dm", ipc=1, iterations=2, width=8, depth=2)
    assert torch.equal(from_pairs.synthetic.images, from_tuple.synthetic.images)

    class Pairs(torch.utils.data.Dataset):  # items as (NumPy image, int label)
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return images[i].astype(np.float32) / 255, int(labels[i])

    assert torch.equal(class_bank(Pairs()).images, x) and torch.equal(class_bank(Pairs()).labels, y)


def test_condense_refuses_a_dataset_that_is_not_pairs():
    with pytest.raises(Exception, match=r"\(image, label\) pairs"):
        class_bank(TensorDataset(torch.zeros(4, 1, 8, 8)))


def test_eval_of_a_truncated_set_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tree = tiny_tree({"name": "digits"})
    Path("recipe.yaml").write_text(yaml.safe_dump(tree))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "recipe.yaml").write_text(yaml.safe_dump(tree))
    truncated = tmp_path / "set.safetensors"
    from distill.tasks.dataset.synthetic import SyntheticSet

    SyntheticSet(torch.zeros(10, 1, 8, 8), 10).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    assert main(["eval", str(folder), "--weights", str(truncated)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cannot read" in err and str(truncated) in err


def test_recipe_standardize_uses_the_training_images_statistics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("train.npz", **dict(zip("xy", patterns(20, 0))))
    np.savez("test.npz", **dict(zip("xy", patterns(6, 1))))
    data = {"name": "arrays", "options": {"train": "train.npz", "test": "test.npz"}}
    raw, raw_test, _ = load_real(load_recipe(tiny_tree(data)))
    bank, test_images, _ = load_real(load_recipe(tiny_tree({**data, "standardize": True})))
    assert abs(float(bank.images.mean())) < 1e-5 and abs(float(bank.images.std()) - 1) < 1e-4
    mean, std = raw.images.mean(), raw.images.std()
    assert torch.allclose(test_images, (raw_test - mean) / std, atol=1e-5)


# The README's dataset-distillation section: its own-data recipe (on the files of "Bring your own data") and
# its evaluate_set example.
_README = (Path(__file__).parents[1] / "README.md").read_text()
_SECTION = _README.split("## Dataset distillation")[1].split("\n## ")[0]
README_SAVEZ = next(b for b in re.findall(r"```python\n(.*?)```", _README, re.S) if "np.savez" in b)
README_DATASET_RECIPE = next(b for b in re.findall(r"```yaml\n(.*?)```", _SECTION, re.S) if "task: dataset" in b)
README_EVALUATE_SET = next(b for b in re.findall(r"```python\n(.*?)```", _SECTION, re.S) if "evaluate_set(" in b)


def test_readme_dataset_recipe_runs_on_the_readme_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(README_SAVEZ, "README.md", "exec"), {})
    Path("my_dataset_recipe.yaml").write_text(README_DATASET_RECIPE)
    args = ["run", "my_dataset_recipe.yaml", "--no-progress", "--out", "run"]
    for item in ("method.ipc=2", "method.iterations=3", "method.options.real_per_class=16", "network.width=8",
                 "evaluate.networks=1", "evaluate.epochs=20", "evaluate.augment=[false]", "evaluate.baseline_ipcs=[1]",
                 "evaluate.full_epochs=10", "evaluate.lr=0.05"):
        args += ["--set", item]
    assert main(args) == 0
    details = json.loads(Path("run/results.json").read_text())["details"]
    assert set(details["sets"]["dm"]) == {"convnet", "mlp"} and details["full"]["mean"] > 50  # 10 digits
    assert main(["eval", "run", "--network", "resnet"]) == 0


def test_readme_evaluate_set_example_runs(capsys):
    namespace = {}
    exec(compile(README_EVALUATE_SET.replace("epochs=100", "epochs=20"), "README.md", "exec"), namespace)
    score = namespace["score"]
    assert len(score["accuracies"]) == 2 and 20 < score["mean"] <= 100  # 1 image per class; chance is 10 %
    assert "% over 2 networks" in capsys.readouterr().out
