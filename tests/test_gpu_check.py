"""benchmarks/gpu_check.py end to end in its --dry mode (the plan a GPU machine runs, a few CPU steps each)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from language_fixtures import make_teacher

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import gpu_check  # noqa: E402


def test_dry_run_writes_every_part(tmp_path):
    teacher = make_teacher(tmp_path / "teacher")
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--dry", "--lm-teacher", str(teacher), "--work", str(tmp_path / "runs"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dry"] and result["device"] == "cpu (dry run)" and result["torch"] == torch.__version__
    assert set(result["families"]) == {"classification", "steps", "score", "language", "dataset"}
    for name, family in result["families"].items():
        assert family["rows"] and family["seconds"] > 0, name
        assert ("train.mixed_precision=bf16" in family["overrides"]) == (name != "dataset")
    assert (tmp_path / "runs" / "classification" / "results.json").exists()
    rows = {r["row"] for r in result["engine_overhead"]["paired"]["rows"]}
    assert "engine train()" in rows and result["engine_overhead"]["device"] == "cpu (CUDA hidden)"
    for step in ("ce_step", "cached_step", "live_step"):
        assert result["language_step"][step]["seconds"] > 0


def test_without_cuda_and_without_dry_it_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
