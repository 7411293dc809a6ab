"""Train a small digits MLP with the engine, supervised and by KD, and write the final metrics
(run by test_distributed.py).

Usage: python distributed_run.py OUT_DIR  (also under torchrun / accelerate launch).

``OUT_DIR/final.json`` (main process): the process count and, per objective, the test
accuracy, loss and flattened student weights. ``OUT_DIR/rank_<i>.json`` (every process):
the fingerprints of the training inputs that process's student saw in the KD phase, so
the test can check the processes split each global batch instead of repeating it.

Under several processes, four more KD runs lay the models out differently (issue 29):
``kd_shard`` shards the frozen teacher (``train.teacher_placement: shard``), ``kd_fsdp`` shards the student too
(``train.distributed.strategy: fsdp``), ``kd_resume`` is ``kd_fsdp`` stopped after its
step-20 checkpoint and resumed to step 40; ``kd_fsdp_bf16`` is ``kd_fsdp`` under bf16 mixed
precision (its one-process reference: ``kd_bf16``). Their student weights are read from the final
checkpoint (one file, written whole by the main process); each process records the state of
its teacher after training (``rank_<i>.json``, ``teachers``).

Then the steps, score and dataset families at tiny budgets (distributed_families.py), under ``families``.
"""

import json
import os
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from distributed_families import families

from distill import Distiller, Match
from distill.data import load_dataset
from distill.engine.checkpoint import load_checkpoint
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.models import build_model
from distill.signals import input_fingerprints
from distill.tasks.classification.metrics import evaluate_classifier
from distill.tasks.classification.objectives import DistillObjective, SupervisedObjective

CONFIG = dict(steps=40, batch_size=64, lr=0.01, optimizer="sgd", progress=False, log_every=10, eval_every=20)


def _teacher(splits) -> torch.nn.Module:
    """A teacher trained without the engine, full batch, so every process holds the very same one."""
    torch.manual_seed(1)
    teacher = build_model("mlp", (1, 8, 8), 10, hidden=[64])
    optimizer = torch.optim.Adam(teacher.parameters(), lr=0.01)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(teacher(splits.train.x), splits.train.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return teacher.eval()


def _record_inputs(model: torch.nn.Module, seen: list[int]) -> None:
    def hook(module, args):
        if module.training:
            seen.extend(input_fingerprints(args[0]).tolist())

    model.register_forward_pre_hook(hook)


def _teacher_state(teacher: torch.nn.Module) -> dict:
    local = sum(getattr(p, "_local_tensor", p).numel() for p in teacher.parameters())
    return {"kinds": sorted({type(p.data).__name__ for p in teacher.parameters()}),
            "dtypes": sorted({str(p.dtype) for p in teacher.parameters()}),
            "devices": sorted({str(p.device) for p in teacher.parameters()}),
            "frozen": not any(p.requires_grad for p in teacher.parameters()),
            "eval": not any(m.training for m in teacher.modules()),
            "numel": sum(p.numel() for p in teacher.parameters()), "local_numel": local}


class _Probe(DistillObjective):
    """The KD objective; after the first optimizer step it takes (a teacher forward done, the next not begun) it records
    its teacher's state: what each process holds while training, not only at the end."""

    seen: dict | None = None

    def after_optimizer_step(self, step: int) -> None:
        if self.seen is None:
            self.seen = _teacher_state(self.distiller.teacher)


def _laid_out_kd(splits, out: Path, evaluator, name: str, stop_at: int | None = None, **layout):
    """The KD run again, on a fresh teacher and student, with the models laid out as ``layout`` says."""
    config = {**CONFIG, "checkpoint_every": 20, **layout}
    teacher = _teacher(splits)
    torch.manual_seed(0)
    student = build_model("mlp", (1, 8, 8), 10, hidden=[32])
    distiller = Distiller(student, teacher, {("output", "output"): Match("kd", options={"temperature": 2.0, "alpha": 0.5})})
    if stop_at is not None:  # a run that stops after its step-`stop_at` checkpoint, as if killed there
        train(DistillObjective(distiller), splits.train, TrainConfig(**{**config, "steps": stop_at}), out / name)
        teacher = _teacher(splits)
        torch.manual_seed(0)
        student = build_model("mlp", (1, 8, 8), 10, hidden=[32])
        distiller = Distiller(student, teacher,
                              {("output", "output"): Match("kd", options={"temperature": 2.0, "alpha": 0.5})})
    probe = _Probe(distiller)
    result = train(probe, splits.train, TrainConfig(**config), out / name, evaluator, resume=stop_at is not None)
    return result, {"training": probe.seen, "end": _teacher_state(teacher)}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    splits = load_dataset("digits")

    def evaluator(model, accelerator):
        return evaluate_classifier(model, splits.test, accelerator)

    results = {}
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=[32])
    result = train(SupervisedObjective(model), splits.train, TrainConfig(**CONFIG), out / "supervised", evaluator)
    results["supervised"] = (model, result)

    teacher = _teacher(splits)
    torch.manual_seed(0)
    student = build_model("mlp", (1, 8, 8), 10, hidden=[32])
    seen: list[int] = []
    _record_inputs(student, seen)
    distiller = Distiller(student, teacher, {("output", "output"): Match("kd", options={"temperature": 2.0, "alpha": 0.5})})
    result = train(DistillObjective(distiller), splits.train, TrainConfig(**CONFIG), out / "kd", evaluator)
    results["kd"] = (student, result)
    teachers, laid_out = {}, {}
    sharded = {"teacher_placement": "shard", "distributed": {"strategy": "fsdp"}}
    layouts = [("kd_shard", None, {"teacher_placement": "shard"}), ("kd_fsdp", None, sharded),
               ("kd_resume", 20, sharded), ("kd_fsdp_bf16", None, {**sharded, "mixed_precision": "bf16"})]
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # the one-process reference of the bf16 run
        layouts = [("kd_bf16", None, {"mixed_precision": "bf16"})]
    for name, stop_at, layout in layouts:
        laid_out[name], teachers[name] = _laid_out_kd(splits, out, evaluator, name, stop_at, **layout)
    other_families = families(out, splits)

    # Only now: a PartialState made before the first train() would fix the process group as a single
    # process, and every launched process would silently train alone (see test_distributed.py).
    state = PartialState()
    (out / f"rank_{state.process_index}.json").write_text(json.dumps({"rank": state.process_index, "inputs": seen,
                                                                               "teachers": teachers}))
    if state.is_main_process:
        final = {"processes": state.num_processes}
        for name, (net, result) in results.items():
            flat = torch.cat([p.detach().flatten() for p in net.parameters()])
            final[name] = {"acc": result.final["acc"], "loss": result.final["loss"],
                           "train_loss": result.final["train_loss"], "weights": flat.tolist()}
        for name, result in laid_out.items():
            weights = load_checkpoint(result.checkpoint).weights
            order = [f"distiller.student.{k}" for k, _ in results["kd"][0].named_parameters()]  # the file sorts keys
            flat = torch.cat([weights[k].flatten() for k in order])
            final[name] = {"acc": result.final["acc"], "loss": result.final["loss"], "weights": flat.tolist(),
                           "saved": sorted(weights)}
        final["families"] = other_families
        (out / "final.json").write_text(json.dumps(final))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
