"""The one cache primitive: an identity names an entry, a build is atomic, a stale entry is never served."""

from __future__ import annotations

import json

import pytest
import torch

from distill.engine.cache import IDENTITY_FILE, cached_entry, cached_tensors, entry_folder, read_entry


def _build(calls, value):
    def build(staging):
        calls.append(value)
        (staging / "payload.txt").write_text(value)
        return {"value": value}

    return build


def test_an_entry_is_built_once_per_identity(tmp_path):
    calls = []
    folder = tmp_path / "entry"
    assert cached_entry(folder, {"a": 1}, _build(calls, "first")) == ({"value": "first"}, False)
    assert cached_entry(folder, {"a": 1}, _build(calls, "second")) == ({"value": "first"}, True)
    assert calls == ["first"] and (folder / "payload.txt").read_text() == "first"


def test_a_stale_entry_is_rebuilt_not_served(tmp_path):
    calls = []
    folder = tmp_path / "entry"
    cached_entry(folder, {"a": 1}, _build(calls, "old"))
    info, hit = cached_entry(folder, {"a": 2}, _build(calls, "new"))  # same folder, other identity
    assert not hit and info == {"value": "new"} and (folder / "payload.txt").read_text() == "new"
    assert json.loads((folder / IDENTITY_FILE).read_text()) == {"a": 2}


def test_an_interrupted_build_leaves_no_entry(tmp_path):
    folder = tmp_path / "entry"

    def failing(staging):
        (staging / "payload.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_entry(folder, {"a": 1}, failing)
    assert not folder.exists() and list(tmp_path.iterdir()) == []
    assert read_entry(folder, {"a": 1}) is None


def test_cached_tensors_round_trip_and_are_keyed_by_content():
    calls = []

    def build():
        calls.append(1)
        return {"images": torch.arange(6.0).reshape(2, 3)}, {"seconds": 1.5}

    tensors, info = cached_tensors("test-tensors", {"mesh": "abc"}, build)
    again, info_again = cached_tensors("test-tensors", {"mesh": "abc"}, build)
    assert calls == [1] and info == info_again == {"seconds": 1.5}
    assert torch.equal(tensors["images"], again["images"])
    assert entry_folder("test-tensors", {"mesh": "abc"}) != entry_folder("test-tensors", {"mesh": "abd"})


def test_a_file_entry_claims_its_identity_only_once_written(tmp_path):
    from distill.engine.cache import read_file_entry, write_file_entry

    path = tmp_path / "set.safetensors"
    assert not read_file_entry(path, {"seed": 0})
    write_file_entry(path, {"seed": 0}, lambda staging: staging.write_text("first"))
    assert read_file_entry(path, {"seed": 0}) and not read_file_entry(path, {"seed": 1})

    def killed(staging):
        staging.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_file_entry(path, {"seed": 1}, killed)
    assert not read_file_entry(path, {"seed": 0}) and not read_file_entry(path, {"seed": 1})  # neither is claimed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.safetensors"]


def test_array_hash_reads_dtype_shape_and_values():
    from distill.engine.cache import array_hash

    x = torch.arange(6)
    assert array_hash(x) == array_hash(x.numpy()) == array_hash(x.clone())
    assert len({array_hash(x), array_hash(x.reshape(2, 3)), array_hash(x.int()), array_hash(x + 1)}) == 4
    assert array_hash(x.to(torch.bfloat16)) != array_hash(x.to(torch.float16))
