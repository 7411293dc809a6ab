"""The classification results table and its notes."""

from distill.tasks.classification.report import results_table
from distill.tasks.classification.run import RowResult


def _row(name: str, role: str, acc: float) -> RowResult:
    return RowResult(name=name, role=role, acc=acc, params=1000, latency_ms=0.01, steps=100, seconds=1.0,
                     samples_per_s=100.0)


def test_a_teacher_no_better_than_scratch_is_called_out():
    rows = [_row("teacher (convnet)", "teacher", 0.823), _row("student scratch (mlp)", "scratch", 0.826),
            _row("student distilled (mlp, kd)", "distilled", 0.81)]
    notes = " ".join(results_table(rows, "t").notes)
    assert "82.30 %" in notes and "82.60 %" in notes and "not above" in notes
    assert "train the teacher longer" in notes and "bigger teacher" in notes and "data" in notes
    assert notes in results_table(rows, "t").markdown()


def test_a_better_teacher_gets_no_note():
    rows = [_row("teacher (convnet)", "teacher", 0.95), _row("student scratch (mlp)", "scratch", 0.826),
            _row("student distilled (mlp, kd)", "distilled", 0.9)]
    assert results_table(rows, "t").notes == []
