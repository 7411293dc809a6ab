"""FSDP2 mechanics of :mod:`distill.engine.placement` in one process (a one-rank gloo group): what a sharded
student holds, that a replicated teacher beside it is left whole and out of the optimizer, and that a checkpoint's
whole weights and optimizer state load back into the sharded student. Two processes: test_distributed.py."""

import copy
import tempfile

import pytest
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from distill import Distiller
from distill.engine.placement import full_optimizer_state, full_weights, load_full_state, shard_student
from distill.engine.trainer import parameter_groups
from distill.models import build_model
from distill.tasks.classification.objectives import DistillObjective


@pytest.fixture
def one_rank_group():
    with tempfile.NamedTemporaryFile() as rendezvous:
        dist.init_process_group("gloo", store=dist.FileStore(rendezvous.name, 1), rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def _step(objective, optimizer, seed):
    generator = torch.Generator().manual_seed(seed)
    batch = {"x": torch.randn(8, 1, 8, 8, generator=generator), "y": torch.randint(0, 10, (8,), generator=generator)}
    objective(batch)["loss"].backward()
    optimizer.step()
    optimizer.zero_grad()


def test_a_sharded_student_beside_a_replicated_teacher_checkpoints_whole_and_loads_back(one_rank_group):
    torch.manual_seed(0)
    teacher, student = build_model("mlp", (1, 8, 8), 10, hidden=[32]), build_model("mlp", (1, 8, 8), 10, hidden=[16])
    objective = DistillObjective(Distiller(student, teacher, {("output", "output"): "kd"}))
    shard_student(objective, torch.device("cpu"), 1)
    assert all(isinstance(p, DTensor) for p in student.parameters())
    assert not any(isinstance(p, DTensor) or p.requires_grad for p in teacher.parameters())  # left whole, frozen
    (params,) = parameter_groups(objective).values()
    assert {id(p) for p in params} == {id(p) for p in student.parameters()}
    optimizer = torch.optim.Adam(params, lr=0.01)
    _step(objective, optimizer, 0)

    weights = full_weights(objective, lambda k: ".teacher." not in f".{k}")
    state = full_optimizer_state(objective, optimizer)
    # as a checkpoint file holds them (with one rank, the gathered tensors may be the live ones)
    weights, state = {k: w.clone() for k, w in weights.items()}, copy.deepcopy(state)
    assert sorted(weights) == sorted(["distiller.passes", *(f"distiller.student.{k}" for k, _ in student.named_parameters())])
    assert not any(isinstance(w, DTensor) for w in weights.values())  # whole tensors, loadable by one process
    assert sorted(state["state"]) == sorted(f"distiller.student.{k}" for k, _ in student.named_parameters())
    _step(objective, optimizer, 1)  # move away from the checkpoint, then back
    assert not torch.equal(full_weights(objective, weights.__contains__)["distiller.student.head.weight"],
                           weights["distiller.student.head.weight"])
    load_full_state(objective, copy.deepcopy(weights), {"model": (optimizer, copy.deepcopy(state))})  # shards its input
    restored = full_weights(objective, weights.__contains__)
    assert all(torch.equal(restored[k], weights[k]) for k in weights)
    restored_state = full_optimizer_state(objective, optimizer)["state"]
    assert all(torch.equal(restored_state[k]["exp_avg"], state["state"][k]["exp_avg"]) for k in state["state"])


def test_a_sharded_teacher_is_left_out_of_the_students_checkpoint_and_its_resume(one_rank_group):
    """``teacher_placement: shard`` beside a whole student: the checkpoint's weights and their reload (the
    engine's own, as on ``--resume``) pass the sharded teacher by, and it still runs afterwards."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from distill.engine.trainer import _load_trainable, _trainable_weights

    teacher, student = build_model("mlp", (1, 8, 8), 10, hidden=[32]), build_model("mlp", (1, 8, 8), 10, hidden=[16])
    objective = DistillObjective(Distiller(student, teacher, {("output", "output"): "kd"}))
    fully_shard(teacher, mesh=init_device_mesh("cpu", (1,)))
    objective({"x": torch.randn(4, 1, 8, 8), "y": torch.zeros(4, dtype=torch.long)})
    weights = {k: w.clone() for k, w in _trainable_weights(objective).items()}
    assert sorted(weights) == sorted(["distiller.passes", *(f"distiller.student.{k}" for k in student.state_dict())])
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    _load_trainable(objective, weights, "checkpoint")
    assert all(torch.equal(w, weights[f"distiller.student.{k}"]) for k, w in student.state_dict().items())
    assert all(isinstance(p, DTensor) for p in teacher.parameters())
    assert torch.isfinite(objective({"x": torch.randn(4, 1, 8, 8), "y": torch.zeros(4, dtype=torch.long)})["loss"])
