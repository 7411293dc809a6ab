"""Where the engine leaves a frozen teacher after ``accelerator.prepare`` (issue 29, item 1).

Accelerate has changed between versions what ``prepare`` does to the modules it is given (TRL issues
2580 and 2584: a frozen teacher wrapped or left on the wrong device). Checked here on the objective the
engine actually trains, at its first optimizer step: the teacher's parameters are on the accelerator's
device, in the teacher's own dtype (bf16 mixed precision is autocast: it must not cast weights), frozen,
in eval mode, and never handed to an optimizer.
"""

import pytest
import torch

import distill.engine.trainer as trainer
from distill import Distiller, Match
from distill.engine.config import TrainConfig
from distill.engine.placement import frozen_teachers
from distill.errors import ConfigError
from distill.models import build_model
from distill.tasks.classification.objectives import DistillObjective


class Probe(DistillObjective):
    """The classification objective; at each optimizer step it records its teacher's state."""

    seen: list[dict]

    def after_optimizer_step(self, step: int) -> None:
        teacher = self.distiller.teacher
        self.seen.append({"dtypes": {p.dtype for p in teacher.parameters()},
                          "devices": {p.device for p in teacher.parameters()},
                          "frozen": not any(p.requires_grad for p in teacher.parameters()),
                          "eval": not any(m.training for m in teacher.modules()),
                          "student_training": self.distiller.student.training})


@pytest.mark.parametrize("teacher_dtype", [torch.float32, torch.bfloat16])
def test_prepared_teacher_keeps_device_dtype_and_stays_out_of_the_optimizer(digits, tmp_path, monkeypatch,
                                                                            teacher_dtype):
    handed, devices = [], []
    make_optimizer, make_accelerator = trainer.make_optimizer, trainer.make_accelerator

    def recording_optimizer(params, settings):
        params = list(params)
        handed.extend(params)
        return make_optimizer(params, settings)

    def recording_accelerator(config, run_dir, **options):
        accelerator = make_accelerator(config, run_dir, **options)
        devices.append(accelerator.device)
        return accelerator

    monkeypatch.setattr(trainer, "make_optimizer", recording_optimizer)
    monkeypatch.setattr(trainer, "make_accelerator", recording_accelerator)
    teacher = build_model("convnet", (1, 8, 8), 10, channels=[4, 8, 8]).to(teacher_dtype)
    student = build_model("mlp", (1, 8, 8), 10, hidden=[16])
    probe = Probe(Distiller(student, teacher, {("output", "output"): Match("kd", options={"temperature": 4.0})},
                            example_input=digits.train.x[:2]))
    probe.seen = []
    config = TrainConfig(steps=2, batch_size=32, mixed_precision="bf16", progress=False, checkpoint_every=0)
    trainer.train(probe, digits.train, config, tmp_path)

    assert len(probe.seen) == 2 and len(devices) == 1
    for state in probe.seen:
        assert state["dtypes"] == {teacher_dtype}  # not upcast, not downcast by bf16 autocast
        assert state["devices"] == {devices[0]}
        assert state["frozen"] and state["eval"] and state["student_training"]
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert handed and not teacher_ids & {id(p) for p in handed}
    assert {id(p) for p in student.parameters()} <= {id(p) for p in handed}


def test_a_bf16_teacher_gets_bf16_inputs_and_its_taps_reach_the_loss_in_the_students_dtype(digits):
    teacher = build_model("convnet", (1, 8, 8), 10, channels=[4, 8, 8]).to(torch.bfloat16)
    student = build_model("mlp", (1, 8, 8), 10, hidden=[16])
    seen = []
    teacher.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    distiller = Distiller(student, teacher, {("output", "output"): "kd"})
    distiller(digits.train.x[:4])
    losses = distiller.compute_losses()
    assert seen == [torch.bfloat16]
    assert losses["kd"].dtype == torch.float32 and losses["kd"].requires_grad


def _kd(digits, teacher_hidden=64):
    teacher = build_model("mlp", (1, 8, 8), 10, hidden=[teacher_hidden])
    student = build_model("mlp", (1, 8, 8), 10, hidden=[16])
    return DistillObjective(Distiller(student, teacher, {("output", "output"): "kd"})), teacher


def test_a_teacher_that_would_not_fit_replicated_is_refused_with_the_placements_that_would(digits, tmp_path):
    objective, teacher = _kd(digits, teacher_hidden=2048)  # ~0.16 M teacher parameters, 0.6 MiB in fp32
    limit = 0.3 / 1024  # 0.3 MiB per device: the student fits, the teacher does not
    config = TrainConfig(steps=1, batch_size=32, progress=False, device_memory_gib=limit)
    with pytest.raises(ConfigError, match=r"teacher_placement: shard .* or cache") as refused:
        trainer.train(objective, digits.train, config, tmp_path)
    assert "distill.teacher_signal: cache" in str(refused.value)
    assert not (tmp_path / "checkpoints").exists()  # refused before training
    # the same limit with room for the teacher trains
    roomy = config.model_copy(update={"device_memory_gib": 1.0})
    assert trainer.train(_kd(digits, teacher_hidden=2048)[0], digits.train, roomy, tmp_path / "roomy").steps == 1


def test_placement_cache_is_refused_where_the_objective_runs_its_teacher_live(digits, tmp_path):
    objective, _ = _kd(digits)
    config = TrainConfig(steps=1, batch_size=32, progress=False, teacher_placement="cache")
    with pytest.raises(ConfigError, match=r"runs its teacher live \(distiller.teacher\).*classification"):
        trainer.train(objective, digits.train, config, tmp_path)


def test_one_process_shards_nothing_and_leaves_the_teacher_frozen_on_the_device(digits, tmp_path):
    objective, teacher = _kd(digits)
    teacher.to(torch.bfloat16)
    config = TrainConfig(steps=1, batch_size=32, progress=False, teacher_placement="shard",
                         distributed={"strategy": "fsdp"})
    trainer.train(objective, digits.train, config, tmp_path)
    params = list(teacher.parameters())
    assert {type(p) for p in params} == {torch.nn.Parameter}  # one process: a plain module, nothing to split
    assert {p.dtype for p in params} == {torch.bfloat16} and {p.device.type for p in params} == {"cpu"}
    assert not any(p.requires_grad for p in params) and not any(m.training for m in teacher.modules())


def test_frozen_teachers_are_found_by_name_outermost_first(digits):
    objective, teacher = _kd(digits)
    assert frozen_teachers(objective) == [("distiller.teacher", teacher)]
    teacher.requires_grad_(True)  # a trained "teacher" is not a frozen one
    assert frozen_teachers(objective) == []


def test_without_a_configured_limit_a_gpus_own_memory_is_the_limit(digits, tmp_path, monkeypatch):
    import distill.engine.placement as placement

    assert placement.device_gib(torch.device("cpu")) is None  # a CPU sets no limit
    monkeypatch.setattr(placement, "device_gib", lambda device: 0.3 / 1024)  # as a GPU of 0.3 MiB would
    objective, _ = _kd(digits, teacher_hidden=2048)
    with pytest.raises(ConfigError, match=r"more than the device's 0.000293 GiB .*teacher_placement: shard"):
        trainer.train(objective, digits.train, TrainConfig(steps=1, batch_size=32, progress=False), tmp_path)


@pytest.mark.parametrize("recipe,family", [("recipes/steps/consistency.yaml", "steps"),
                                           ("recipes/score/particles_sds.yaml", "score"),
                                           ("recipes/scene/compact_gaussians.yaml", "scene")])
@pytest.mark.parametrize("placement", ["shard", "cache"])
def test_families_that_cannot_place_their_teacher_refuse_when_the_recipe_loads(recipe, family, placement):
    from pathlib import Path

    from distill.experiment import load_recipe

    path = Path(__file__).parents[1] / recipe
    assert load_recipe(path).train.teacher_placement == "replicate"
    with pytest.raises(ConfigError, match=rf"teacher_placement '{placement}' is not available in the {family} family"
                                          r".*Use replicate.*sharded teacher: classification and language"):
        load_recipe(path, [f"train.teacher_placement={placement}"])
