"""Helpers shared by the benchmark scripts: seeds summary, a printed table, JSON output."""

from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path

import torch


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def verdict(accs: list[float], baseline: list[float]) -> str:
    """helps / hurts / tie against the baseline's seeds at 2σ (the larger of the two stds)."""
    if len(accs) < 2:
        return "one seed: no verdict"
    (mean, std), (ref_mean, ref_std) = mean_std(accs), mean_std(baseline)
    noise = 2 * max(std, ref_std)
    return "helps" if mean - ref_mean > noise else "hurts" if mean - ref_mean < -noise else "tie"


def format_mean_std(value: tuple[float, float] | None, spec: str = ".4f") -> str:
    """A (mean, std) pair as ``mean ± std`` (``–`` for None)."""
    return "–" if value is None else f"{value[0]:{spec}} ± {value[1]:{spec}}"


def machine() -> str:
    return f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)))


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1))
    print(f"wrote {path}")
