"""What the engine promises every family: named batches, parameter groups with their own settings
and update rates, callbacks after each optimizer step, tied weights in checkpoints, and a
fit-or-load cache that says when it retrains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.data import TensorDictDataset
from distill.engine.cache import fit_or_load, store_cached
from distill.engine.checkpoint import latest_checkpoint, load_checkpoint, load_weights_file, save_weights_file
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.errors import ConfigError, DistillError


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{"steps": 4, "batch_size": 8, "progress": False, "optimizer": "sgd", "momentum": 0.0,
                          "lr": 0.1, **overrides})


class TwoGroups(nn.Module):
    """Two scalars fitted to the batch's ``target``; each is its own parameter group."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(()))
        self.steps_seen: list[int] = []

    def parameter_groups(self):
        return {"a": [self.a], "b": [self.b]}

    def after_optimizer_step(self, step: int) -> None:
        self.steps_seen.append(step)

    def forward(self, batch):
        target = batch["target"]
        return {"loss": ((self.a - target) ** 2).mean() + ((self.b - target) ** 2).mean()}


def _targets(n: int = 64) -> TensorDictDataset:
    return TensorDictDataset(target=torch.ones(n))


def test_named_batches_reach_the_objective_and_each_group_has_its_own_lr(tmp_path):
    objective = TwoGroups()
    train(objective, _targets(), _config(steps=1, groups={"b": {"lr": 0.2}}), tmp_path)
    # one SGD step on (p - 1)²: p ← 0 + lr · 2
    assert objective.a.item() == pytest.approx(0.2) and objective.b.item() == pytest.approx(0.4)


def test_each_group_clips_its_own_gradient(tmp_path):
    objective = TwoGroups()
    train(objective, _targets(), _config(steps=1, groups={"a": {"max_grad_norm": 0.5}}), tmp_path)
    assert objective.a.item() == pytest.approx(0.1 * 0.5) and objective.b.item() == pytest.approx(0.2)


def test_a_group_may_step_less_often(tmp_path):
    objective = TwoGroups()
    train(objective, _targets(), _config(steps=4, groups={"a": {"every": 2}}), tmp_path)
    b = 0.0
    for _ in range(4):
        b += 0.1 * 2 * (1 - b)
    a = 0.0
    for _ in range(2):  # steps 2 and 4 only; the gradients of steps 1 and 3 are discarded
        a += 0.1 * 2 * (1 - a)
    assert objective.a.item() == pytest.approx(a) and objective.b.item() == pytest.approx(b)


def test_callbacks_run_once_per_optimizer_step_not_per_micro_batch(tmp_path):
    objective = TwoGroups()
    train(objective, _targets(), _config(steps=3, grad_accum=2), tmp_path)
    assert objective.steps_seen == [1, 2, 3]


def test_unknown_group_names_are_refused_with_the_real_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"train.groups names \['generator'\].*\['a', 'b'\]"):
        train(TwoGroups(), _targets(), _config(groups={"generator": {"lr": 0.1}}), tmp_path)


def test_a_batch_that_is_neither_mapping_nor_pair_is_explained(tmp_path):
    class Triples(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            return torch.zeros(2), torch.zeros(()), torch.zeros(())

    with pytest.raises(DistillError, match="mapping of named tensors"):
        train(TwoGroups(), Triples(), _config(), tmp_path)


class TiedLM(nn.Module):
    """A language-model shape: the output projection shares the embedding matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.head = nn.Linear(4, 11, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, batch):
        logits = self.head(self.embed(batch["input_ids"]))
        return {"loss": nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())}


def test_checkpoints_hold_tied_weights_and_resume_keeps_them_tied(tmp_path):
    ids = torch.randint(11, (32, 5), generator=torch.Generator().manual_seed(0))
    data = TensorDictDataset(input_ids=ids, labels=ids.roll(1, dims=1))
    model = TiedLM()
    train(model, data, _config(steps=2, optimizer="adam", lr=0.01, checkpoint_every=1), tmp_path)
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"), expected=model.state_dict())
    assert torch.equal(ckpt.weights["head.weight"], ckpt.weights["embed.weight"])
    resumed = TiedLM()
    train(resumed, data, _config(steps=3, optimizer="adam", lr=0.01, checkpoint_every=1), tmp_path, resume=True)
    assert resumed.head.weight is resumed.embed.weight  # still one parameter after loading
    assert not torch.equal(resumed.embed.weight, TiedLM().embed.weight)


def test_weight_files_keep_ties(tmp_path):
    model = TiedLM()
    save_weights_file(tmp_path / "w.safetensors", model.state_dict())
    loaded = load_weights_file(tmp_path / "w.safetensors")
    assert set(loaded) == {"embed.weight", "head.weight"} and torch.equal(loaded["head.weight"], model.head.weight)


def test_a_cache_entry_that_does_not_load_is_reported_and_refitted():
    spec = {"test": "cache-warning"}
    store_cached(nn.Linear(3, 2), spec, {"note": "old"})
    fits = []
    with pytest.warns(UserWarning, match="could not be loaded"):
        info, cached = fit_or_load(nn.Linear(5, 2), spec, lambda: fits.append(1) or {"note": "new"})
    assert not cached and fits == [1] and info == {"note": "new"}
    info, cached = fit_or_load(nn.Linear(5, 2), spec, lambda: fits.append(2) or {})
    assert cached and fits == [1] and info["note"] == "new"


def test_a_process_group_fixed_before_the_launch_is_refused(tmp_path, monkeypatch):
    from accelerate import PartialState

    PartialState()  # created before the launcher's environment is seen: one process
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"2 processes were launched .* has 1"):
        train(TwoGroups(), _targets(), _config(), tmp_path)
