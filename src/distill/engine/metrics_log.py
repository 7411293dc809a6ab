"""Append training metrics to ``metrics.jsonl`` and ``metrics.csv`` in the run folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path


class MetricsLog:
    """One row per logged step; the CSV header grows to the union of keys seen."""

    def __init__(self, run_dir: Path, resume: bool = False) -> None:
        self.jsonl = run_dir / "metrics.jsonl"
        self.csv = run_dir / "metrics.csv"
        self.rows: list[dict] = []
        self._keys: list[str] | None = None
        if resume and self.jsonl.exists():
            self.rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
        elif self.jsonl.exists():
            self.jsonl.unlink()

    def truncate_after(self, step: int) -> None:
        """Forget rows logged after ``step`` (a resumed run re-logs them)."""
        self.rows = [r for r in self.rows if r["step"] <= step]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self._write_csv()

    def log(self, row: dict) -> None:
        """Append one row to both files (the CSV is rewritten only when a new column appears)."""
        self.rows.append(row)
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._keys is not None and set(row) <= set(self._keys) and self.csv.exists():
            with self.csv.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self._keys).writerow(row)
        else:
            self._write_csv()

    def _write_csv(self) -> None:
        self._keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with self.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._keys)
            writer.writeheader()
            writer.writerows(self.rows)
