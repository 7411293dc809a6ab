"""Train a small digits MLP with the engine, supervised and by KD, and write the final metrics
(run by test_distributed.py).

Usage: python distributed_run.py OUT_DIR  (also under torchrun / accelerate launch).

``OUT_DIR/final.json`` (main process): the process count and, per objective, the test
accuracy, loss and flattened student weights. ``OUT_DIR/rank_<i>.json`` (every process):
the fingerprints of the training inputs that process's student saw in the KD phase, so
the test can check the processes split each global batch instead of repeating it.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from distill import Distiller, Match
from distill.data import load_dataset
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

    # Only now: a PartialState made before the first train() would fix the process group as a single
    # process, and every launched process would silently train alone (see test_distributed.py).
    state = PartialState()
    (out / f"rank_{state.process_index}.json").write_text(json.dumps({"rank": state.process_index, "inputs": seen}))
    if state.is_main_process:
        final = {"processes": state.num_processes}
        for name, (net, result) in results.items():
            flat = torch.cat([p.detach().flatten() for p in net.parameters()])
            final[name] = {"acc": result.final["acc"], "loss": result.final["loss"],
                           "train_loss": result.final["train_loss"], "weights": flat.tolist()}
        (out / "final.json").write_text(json.dumps(final))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
