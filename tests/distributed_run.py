"""Train a small digits MLP with the engine and write its final metrics (run by test_distributed.py).

Usage: python distributed_run.py OUT_DIR  (also under torchrun / accelerate launch).
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from distill.data import load_dataset
from distill.engine.config import TrainConfig
from distill.tasks.classification.objectives import SupervisedObjective
from distill.engine.trainer import train
from distill.models import build_model
from distill.tasks.classification.metrics import evaluate_classifier


def main(out: Path) -> None:
    torch.set_num_threads(1)
    splits = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden=[32])
    config = TrainConfig(
        steps=40,
        batch_size=64,
        lr=0.01,
        optimizer="sgd",
        progress=False,
        log_every=10,
        eval_every=20,
    )
    result = train(
        SupervisedObjective(model),
        splits.train,
        config,
        out,
        evaluator=lambda m, acc: evaluate_classifier(m, splits.test, acc),
    )
    state = PartialState()
    if state.is_main_process:
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        (out / "final.json").write_text(
            json.dumps(
                {
                    "processes": state.num_processes,
                    "acc": result.final["acc"],
                    "loss": result.final["loss"],
                    "weights": flat.tolist(),
                }
            )
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
