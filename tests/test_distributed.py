"""Two CPU processes (Accelerate + gloo) give the same run as one process with the same global batch.

Stated tolerance: every weight within 1e-5 and test accuracy within 0.5 points
(only the order of floating-point sums differs). Launched as
``accelerate launch --multi_gpu --num_processes 2``: on a machine without GPUs
distill's engine passes ``cpu=True`` to Accelerate, which then runs the processes on
gloo. (Accelerate 1.15's ``--cpu`` launcher starts one process unless given an MPI
hostfile; the process count is asserted so such a silent fallback would fail here.)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("distributed_run.py")
BIN = Path(sys.executable).parent


def _run(cmd: list[str], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "final.json").read_text())


def test_two_processes_match_one(tmp_path):
    one = _run([sys.executable], tmp_path / "one")
    two = _run([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"], tmp_path / "two")
    assert one["processes"] == 1 and two["processes"] == 2
    assert abs(one["acc"] - two["acc"]) <= 0.005
    assert max(abs(a - b) for a, b in zip(one["weights"], two["weights"])) <= 1e-5
