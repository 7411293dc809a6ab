"""Train a tiny language student from the top-k cache with the engine and write its weights
(run by test_language_distributed.py, under one process and under ``accelerate launch``); then
again from the live teacher with ``train.teacher_placement: shard`` (FSDP2 over the processes;
one process shards nothing), recording how much of the teacher each process held.

Usage: python distributed_language.py TEACHER_FOLDER OUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from distill.data.tensors import TensorDictDataset
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.losses import LOSSES
from distill.tasks.language.objectives import LanguageObjective, live_signal
from distill.tasks.language.recipe import LanguageRecipe
from distill.tasks.language.run import make_student, prepare, teacher_cache


def main() -> None:
    teacher, out = Path(sys.argv[1]), Path(sys.argv[2])
    recipe = LanguageRecipe(name="dist", task="language", teacher={"source": str(teacher)},
                            data={"corpus": "generated", "block_length": 16, "train_blocks": 32, "eval_blocks": 4})
    context = prepare(recipe)
    signal = teacher_cache(context, "train", 8)  # built by the test before the launch
    torch.manual_seed(0)
    objective = LanguageObjective(make_student(recipe, context), LOSSES.build("forward_kl"), signal)
    data = TensorDictDataset(input_ids=context.train_blocks, row=torch.arange(len(context.train_blocks)))
    config = TrainConfig(steps=8, batch_size=8, lr=0.01, progress=False, log_every=4)
    train(objective, data, config, out / "run")
    torch.manual_seed(0)
    live = LanguageObjective(make_student(recipe, context), LOSSES.build("forward_kl"), live_signal(context.teacher),
                             context.teacher)
    train(live, data, config.model_copy(update={"teacher_placement": "shard"}), out / "live")
    held = sum(getattr(p, "_local_tensor", p).numel() for p in context.teacher.parameters())
    state = PartialState()
    if state.is_main_process:
        weights, live_weights = (torch.cat([p.detach().flatten() for p in o.model.parameters()]) for o in (objective, live))
        (out / "final.json").write_text(json.dumps({
            "processes": state.num_processes, "weights": weights[::7].tolist(), "live": live_weights[::7].tolist(),
            "teacher_held": held, "teacher_numel": sum(p.numel() for p in context.teacher.parameters())}))


if __name__ == "__main__":
    main()
