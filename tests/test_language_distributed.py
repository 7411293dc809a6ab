"""Two CPU processes (Accelerate + gloo) train the same language student from the top-k cache as one
process with the same global batch, and from the live teacher sharded over the two processes
(``train.teacher_placement: shard``, FSDP2) as from the whole teacher in one: every weight within
1e-5 (only the order of sums differs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from language_fixtures import make_teacher

from distill.tasks.language.recipe import LanguageRecipe
from distill.tasks.language.run import prepare, teacher_cache

SCRIPT = Path(__file__).with_name("distributed_language.py")
BIN = Path(sys.executable).parent


def _run(cmd: list[str], teacher: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, str(SCRIPT), str(teacher), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "final.json").read_text())


def test_two_processes_train_the_same_language_student(tmp_path):
    teacher = make_teacher(tmp_path / "teacher")
    recipe = LanguageRecipe(name="dist", task="language", teacher={"source": str(teacher)},
                            data={"corpus": "generated", "block_length": 16, "train_blocks": 32, "eval_blocks": 4})
    teacher_cache(prepare(recipe), "train", 8)  # built once here, so the launched processes only read it
    one = _run([sys.executable], teacher, tmp_path / "one")
    two = _run([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"], teacher, tmp_path / "two")
    assert one["processes"] == 1 and two["processes"] == 2
    assert max(abs(a - b) for a, b in zip(one["weights"], two["weights"])) <= 1e-5
    assert max(abs(a - b) for a, b in zip(one["live"], two["live"])) <= 1e-5
    assert one["live"] != one["weights"]  # the live run is another run, not the cached one again
    assert one["teacher_held"] == one["teacher_numel"] and two["teacher_held"] < two["teacher_numel"]
