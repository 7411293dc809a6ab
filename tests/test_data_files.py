"""Bring your own data from files: the ``arrays`` (.npz / .npy) and ``image_folder`` datasets."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from distill.data import load_dataset, make_loader
from distill.errors import ConfigError, DistillError
from distill.losses.base import IGNORE_INDEX

# The README's "Bring your own data" section: its Python block and its recipe (read from the README).
_README = (Path(__file__).parents[1] / "README.md").read_text()
README_SNIPPET = next(b for b in re.findall(r"```python\n(.*?)```", _README, re.S) if "np.savez" in b)
README_RECIPE = next(b for b in re.findall(r"```yaml\n(.*?)```", _README, re.S) if "name: arrays" in b)
README_DATA = next(line for line in README_RECIPE.splitlines() if line.startswith("data:"))


def everything(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(make_loader(dataset, len(dataset), shuffle=False)))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary current directory with valid train.npz (10 × (1, 4, 4), 3 classes), test.npz, x.npy, y.npy."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez("train.npz", x=rng.random((10, 1, 4, 4), dtype=np.float32), y=np.arange(10) % 3)
    np.savez("test.npz", x=rng.random((6, 1, 4, 4), dtype=np.float32), y=np.arange(6) % 3)
    np.save("x.npy", rng.random((10, 1, 4, 4), dtype=np.float32))
    np.save("y.npy", np.arange(10) % 3)
    return tmp_path


# ---- arrays -----------------------------------------------------------------------------------


def test_readme_snippet_round_trips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(README_SNIPPET, "README.md", "exec"), namespace)
    data = yaml.safe_load(README_DATA)["data"]
    splits = load_dataset(data["name"], **data["options"])
    assert splits.name == "arrays" and splits.input_shape == (1, 8, 8) and splits.num_classes == 10
    assert (len(splits.train), len(splits.test), splits.transfer) == (1347, 450, None)
    x, y = everything(splits.test)
    assert torch.equal(x, torch.from_numpy(namespace["x_test"]))
    assert torch.equal(y, torch.from_numpy(namespace["y_test"]).long())
    assert splits.extra["files"] == {"train": "my_train.npz", "test": "my_test.npz"}


def test_npy_pairs_inputs_labels_keys_uint8_and_transfer(workdir):
    pixels = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3) * 8
    np.save("x.npy", pixels)
    np.save("y.npy", np.array([0, 1, 2, 3, 0], dtype=np.int32))
    np.savez("held_out.npz", inputs=np.ones((4, 2, 3)), labels=np.array([3, 2, 1, 0]))
    np.save("unlabeled.npy", np.zeros((7, 2, 3), dtype=np.float32))
    splits = load_dataset(
        "arrays", train={"x": "x.npy", "y": "y.npy"}, test="held_out.npz", transfer="unlabeled.npy", num_classes=5
    )
    assert splits.input_shape == (2, 3) and splits.num_classes == 5
    x, y = everything(splits.train)
    assert x.dtype == torch.float32 and torch.allclose(x, torch.from_numpy(pixels / 255).float())
    assert y.dtype == torch.long and y.tolist() == [0, 1, 2, 3, 0]
    x, y = everything(splits.test)
    assert torch.equal(x, torch.ones(4, 2, 3)) and y.tolist() == [3, 2, 1, 0]
    x, y = everything(splits.transfer)
    assert x.shape == (7, 2, 3) and torch.equal(y, torch.full((7,), IGNORE_INDEX))


def test_transfer_npz_with_labels_are_ignored(workdir):
    np.savez("more.npz", x=np.full((3, 1, 4, 4), 0.5, dtype=np.float32), y=np.zeros(3, dtype=np.int64))
    splits = load_dataset("arrays", train="train.npz", test="test.npz", transfer="more.npz")
    assert splits.num_classes == 3
    x, y = everything(splits.transfer)
    assert torch.equal(x, torch.full((3, 1, 4, 4), 0.5)) and torch.equal(y, torch.full((3,), IGNORE_INDEX))


def test_fingerprint_follows_file_contents(workdir):
    first = load_dataset("arrays", train="train.npz", test="test.npz").extra["fingerprint"]
    assert load_dataset("arrays", train="train.npz", test="test.npz").extra["fingerprint"] == first
    np.savez("train.npz", x=np.zeros((10, 1, 4, 4), dtype=np.float32), y=np.arange(10) % 3)
    assert load_dataset("arrays", train="train.npz", test="test.npz").extra["fingerprint"] != first


def _save(name, **arrays):
    return lambda: np.savez(name, **arrays)


def _npy(name, array):
    return lambda: np.save(name, array)


def _text(name, text):
    return lambda: open(name, "w").write(text)


GOOD_X = np.zeros((10, 1, 4, 4), dtype=np.float32)
GOOD_Y = np.arange(10) % 3

BAD_FILES = [
    # (write bad files, options replacing train=train.npz / test=test.npz, error type, message)
    (None, {"train": "nope.npz"}, DistillError,
     r"train: nope.npz does not exist \(relative paths start at the current directory, .*\); fix the path in train"),
    (lambda: os.mkdir("folder.npz"), {"train": "folder.npz"}, DistillError,
     "train: folder.npz is a folder, not a file"),
    (_text("train.csv", "1,2,3\n"), {"train": "train.csv"}, DistillError,
     r"train: train.csv is not a NumPy .npy or .npz file \(it starts with b'1,2,3\\n'\); write arrays with numpy.save"),
    (None, {"train": "x.npy"}, DistillError,
     r"train: x.npy is a single-array .npy file, but train needs inputs and labels; give train: \{x: inputs.npy, "
     r"y: labels.npy\}, or save both in one file with numpy.savez\('x.npz', x=inputs, y=labels\)"),
    (None, {"train": {"x": "test.npz", "y": "y.npy"}}, DistillError,
     r"train.x: test.npz is an .npz archive, not one .npy array; give the archive itself as train: test.npz"),
    (None, {"train": {"inputs": "x.npy", "y": "y.npy"}}, ConfigError,
     r"train as a mapping needs exactly the keys x and y .* got \['inputs', 'y'\]"),
    (None, {"test": ["x.npy", "y.npy"]}, ConfigError,
     r"test must be an .npz path or a mapping \{x: inputs.npy, y: labels.npy\}, got list"),
    (_save("t.npz", x=GOOD_X, target=GOOD_Y), {"train": "t.npz"}, DistillError,
     r"train: t.npz has no array of labels: expected the key 'y' or 'labels', found 'x', 'target'; "
     r"save it with numpy.savez\(path, x=inputs, y=labels\)"),
    (_save("t.npz", data=GOOD_X), {"test": "t.npz"}, DistillError,
     "test: t.npz has no array of inputs: expected the key 'x' or 'inputs', found 'data'"),
    (_save("t.npz", x=GOOD_X, inputs=GOOD_X, y=GOOD_Y), {"train": "t.npz"}, DistillError,
     "train: t.npz has both 'x' and 'inputs'; keep only one array of inputs"),
    (_save("t.npz", x=np.array([np.zeros(3), np.zeros(4)], dtype=object), y=GOOD_Y[:2]), {"train": "t.npz"},
     DistillError, r"train: cannot read t.npz\['x'\] \(.*\). Re-save it with numpy.save or numpy.savez; "
     r"distill reads files without pickle, so arrays must hold plain numbers, not dtype=object"),
    (_npy("obj.npy", np.array([{"a": 1}] * 10, dtype=object)), {"train": {"x": "obj.npy", "y": "y.npy"}},
     DistillError, r"train.x: cannot read obj.npy \(.*\). Re-save it with numpy.save"),
    (_text("t.npz", "PK\x03\x04 not really a zip"), {"test": "t.npz"}, DistillError,
     r"test: cannot read t.npz \(File is not a zip file\). Re-save it with numpy.save"),
    (_save("t.npz", x=GOOD_X.astype(np.int64), y=GOOD_Y), {"train": "t.npz"}, DistillError,
     r"train: t.npz\['x'\] has dtype int64; inputs must be floating point, or uint8 for 8-bit images "
     r"\(scaled to \[0, 1\]\). Save them as float32"),
    (_save("t.npz", x=GOOD_X, y=GOOD_Y[:9]), {"train": "t.npz"}, DistillError,
     r"x_train has 10 samples but y_train has 9 labels; pass one label per input. "
     r"\(here x_train, y_train = t.npz\['x'\], \['y'\]; x_test, y_test = test.npz\['x'\], \['y'\]\)"),
    (_save("t.npz", inputs=GOOD_X[:6], labels=np.arange(6)), {"test": "t.npz", "num_classes": 3}, DistillError,
     r"y_test has label 5 but num_classes=3; .* Pass num_classes=6 or fix the labels. "
     r"\(here .*x_test, y_test = t.npz\['inputs'\], \['labels'\]\)"),
    (_save("t.npz", x=np.zeros((6, 1, 4, 5)), y=np.arange(6) % 3), {"test": "t.npz"}, DistillError,
     r"x_test samples have shape \(1, 4, 5\) but training samples have shape \(1, 4, 4\).*x_test, y_test = t.npz"),
    (_save("t.npz", x=GOOD_X, y=GOOD_Y.astype(np.float64)), {"train": "t.npz"}, DistillError,
     r"y_train has dtype torch.float64; labels must be integer class indices. .* x_train, y_train = t.npz"),
    (_npy("u.npy", np.zeros((3, 16))), {"transfer": "u.npy"}, DistillError,
     r"transfer samples have shape \(16,\) but training samples have shape \(1, 4, 4\).* transfer = u.npy\)"),
]


@pytest.mark.parametrize("write,options,error,message", BAD_FILES)
def test_arrays_rejects_bad_files_naming_file_and_fix(workdir, write, options, error, message):
    if write:
        write()
    with pytest.raises(error, match=message):
        load_dataset("arrays", **{"train": "train.npz", "test": "test.npz", **options})


def test_arrays_needs_train_and_test(workdir):
    with pytest.raises(DistillError, match="cannot build dataset 'arrays'.*missing 1 required .*'test'"):
        load_dataset("arrays", train="train.npz")


# ---- image folders ----------------------------------------------------------------------------

COLOURS = {"dog": (0.0, 0.0, 1.0), "ant": (1.0, 0.0, 0.0), "cat": (0.0, 1.0, 0.0)}  # sorted: ant, cat, dog


def write_folder(root, images_per_class=2, shape=(5, 7)):
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(images_per_class):
            plt.imsave(root / name / f"{i}.png", np.broadcast_to(np.array(colour), (*shape, 3)).copy())


@pytest.fixture
def images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "test", images_per_class=1)
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "ant" / "._0.png").write_bytes(b"macOS resource fork")
    return tmp_path


def test_image_folder_labels_follow_sorted_class_names(images):
    splits = load_dataset("image_folder", train="train", test="test")
    assert splits.name == "image_folder" and splits.extra["class_names"] == ["ant", "cat", "dog"]
    assert splits.input_shape == (3, 5, 7) and splits.num_classes == 3
    assert (len(splits.train), len(splits.test)) == (6, 3)
    for dataset in (splits.train, splits.test):
        x, y = everything(dataset)
        assert x.dtype == torch.float32
        for image, label in zip(x, y, strict=True):
            colour = COLOURS[splits.extra["class_names"][label]]
            assert torch.equal(image, torch.tensor(colour, dtype=torch.float32)[:, None, None].expand(3, 5, 7))


def test_image_folder_grayscale_and_resize(images):
    splits = load_dataset("image_folder", train="train", test="test", size=[3, 4], grayscale=True)
    assert splits.input_shape == (1, 3, 4)
    x, y = everything(splits.test)
    expected = [0.299, 0.587, 0.114]  # ITU-R 601 luma of pure red, green, blue (Pillow's "L")
    assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.tensor(expected), atol=1 / 255)


def test_image_folder_fingerprint_follows_image_contents(images):
    first = load_dataset("image_folder", train="train", test="test").extra["fingerprint"]
    plt.imsave(images / "test" / "cat" / "0.png", np.ones((5, 7, 3)))
    assert load_dataset("image_folder", train="train", test="test").extra["fingerprint"] != first


def _different_size(root):
    plt.imsave(root / "train" / "cat" / "1.png", np.zeros((6, 7, 3)))


def _missing_test_class(root):
    for path in (root / "test" / "dog").iterdir():
        path.unlink()
    (root / "test" / "dog").rmdir()
    (root / "test" / "emu").mkdir()
    plt.imsave(root / "test" / "emu" / "0.png", np.zeros((5, 7, 3)))


def _one_class(root):
    for name in ("ant", "cat"):
        for path in (root / "train" / name).iterdir():
            path.unlink()
        (root / "train" / name).rmdir()


def _empty_class(root):
    for path in (root / "train" / "cat").iterdir():
        path.unlink()


def _corrupt(root):
    (root / "train" / "cat" / "1.png").write_bytes(b"\x89PNG not really")


def _sixteen_bit(root):
    Image.fromarray(np.full((5, 7), 40000, dtype=np.uint16)).save(root / "train" / "cat" / "1.png")


BAD_FOLDERS = [
    (_different_size, {}, r"train/cat/1.png is 6×7 \(H×W\) but train/ant/0.png is 5×7 \(H×W\); set size: \[H, W\]"),
    (_missing_test_class, {}, r"test folder test has classes \['ant', 'cat', 'emu'\] but train folder train has "
     r"\['ant', 'cat', 'dog'\]; .* same sub-folders \(missing in test: \['dog'\], not in train: \['emu'\]\)"),
    (_one_class, {}, r"train: train has 1 class sub-folder\(s\) \['dog'\]; put each class's images in its own sub-folder"),
    (_empty_class, {}, r"train: class folder train/cat holds no images \(.*\.png.*\); add images or remove the folder"),
    (_corrupt, {}, r"cannot read image train/cat/1.png \(.*\); replace the file or remove it"),
    (_sixteen_bit, {}, r"train/cat/1.png has 'I;16' pixels \(16-bit or floating point\); image_folder reads 8-bit"),
    (None, {"train": "nowhere"}, r"train: nowhere does not exist \(relative paths start at the current directory"),
    (None, {"test": "train/ant/0.png"}, "test: train/ant/0.png is a file, not a folder"),
    (None, {"size": [32]}, re.escape("size must be [height, width] in pixels, e.g. [32, 32]; got [32].")),
    (None, {"grayscale": "yes"}, "grayscale must be true or false, got 'yes'"),
]


@pytest.mark.parametrize("change,options,message", BAD_FOLDERS)
def test_image_folder_rejects_bad_folders_naming_file_and_fix(images, change, options, message):
    if change:
        change(images)
    with pytest.raises(DistillError, match=message):
        load_dataset("image_folder", **{"train": "train", "test": "test", **options})


def test_readme_recipe_runs_on_the_readme_files(tmp_path, monkeypatch):
    from distill.cli import main

    monkeypatch.chdir(tmp_path)
    exec(compile(README_SNIPPET, "README.md", "exec"), {})
    Path("my_recipe.yaml").write_text(README_RECIPE)
    args = ["run", "my_recipe.yaml", "--no-progress", "--out", "run"]
    for item in ("train.steps=80", "teacher.train.steps=80", "teacher.options.channels=[8,16,16]"):
        args += ["--set", item]
    assert main(args) == 0
    rows = json.loads(Path("run/results.json").read_text())["rows"]
    assert [r["name"].split(" (")[0] for r in rows] == ["teacher", "student scratch", "student distilled"]
    assert all(0.5 < r["acc"] <= 1.0 for r in rows)  # far above chance (10 %) after 80 steps


def write_gray_folder(root, images_per_class=2, shape=(5, 7)):
    for label, name in enumerate(sorted(COLOURS)):
        (root / name).mkdir(parents=True)
        for i in range(images_per_class):
            Image.fromarray(np.full(shape, 40 * label + i, dtype=np.uint8)).save(root / name / f"{i}.png")  # mode L


def test_image_folder_of_single_channel_images_has_one_channel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_gray_folder(tmp_path / "train")
    write_gray_folder(tmp_path / "test", images_per_class=1)
    splits = load_dataset("image_folder", train="train", test="test")
    assert splits.input_shape == (1, 5, 7)
    x, _ = everything(splits.train)
    assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.tensor([0, 1, 40, 41, 80, 81]) / 255)
    assert load_dataset("image_folder", train="train", test="test", grayscale=False).input_shape == (3, 5, 7)


def test_image_folder_mixing_single_channel_and_colour_images_reads_colour(images):
    gray = np.asarray(Image.open(images / "train" / "cat" / "0.png").convert("L"))
    Image.fromarray(gray).save(images / "train" / "cat" / "0.png")  # one grey image among colour ones
    splits = load_dataset("image_folder", train="train", test="test")
    assert splits.input_shape == (3, 5, 7)
    x, _ = everything(splits.train)
    grey = x[2]  # sorted classes ant, cat, dog: cat's first image
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert torch.allclose(grey, torch.tensor(gray / 255, dtype=torch.float32).expand(3, 5, 7))


def test_readme_names_the_grayscale_option_where_image_folders_are():
    section = _README.split("## Bring your own data")[1].split("\n## ")[0]
    assert "grayscale" in section and "image_folder" in section
