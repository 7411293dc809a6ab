import json

import pytest
import torch

from distill.cli import main

RECIPE = "recipes/digits_kd.yaml"
FAST = ["--set", "train.steps=30", "--set", "teacher.train.steps=30", "--set", "train.eval_every=10",
        "--set", "teacher.train.eval_every=10", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", RECIPE, *FAST, "--out", str(out)]) == 0
    return out


def _markdown_table(text: str) -> list[list[str]]:
    """The cells of the one Markdown table in ``text``: header, rule and body lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    assert lines and all(line.endswith("|") for line in lines), text
    return [[cell.strip() for cell in line[1:-1].split("|")] for line in lines]


def test_run_writes_results_report_and_plot(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["format"], results["task"], results["name"]) == ("distill-results-v1", "classification", "digits-kd")
    assert results["details"]["dataset"] == {"name": "digits", "train": 1347, "test": 450, "transfer": 0}
    assert list(results["columns"]) == ["name", "acc", "params", "latency_ms", "steps", "seconds"]
    names = [r["name"] for r in results["rows"]]
    assert names[0].startswith("teacher") and names[1].startswith("student scratch") and "distilled" in names[-1]
    assert all(0.0 <= r["acc"] <= 1.0 and r["params"] > 0 and r["latency_ms"] > 0 for r in results["rows"])
    header, rule, *body = _markdown_table((run_dir / "report.md").read_text())
    assert header == list(results["columns"].values())
    assert header[:2] == ["model", "test acc"] and set(rule) == {"---"}
    assert [line[0] for line in body] == names
    for line, row in zip(body, results["rows"]):
        assert len(line) == len(header)
        assert line[1].endswith(" %") and float(line[1].removesuffix(" %")) == pytest.approx(100 * row["acc"], abs=0.005)
        assert line[2] == f"{row['params']:,}" and line[4] == str(row["steps"])
    assert (run_dir / "learning_curves.png").stat().st_size > 1000
    assert (run_dir / "student.safetensors").exists()
    assert (run_dir / "distill" / "metrics.csv").exists()


def test_rerun_uses_cached_teacher_and_resume_is_a_no_op(run_dir, tmp_path):
    assert main(["run", RECIPE, *FAST, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows[0]["steps"] == 0  # the teacher came from the content-hash cache
    first = json.loads((run_dir / "results.json").read_text())["rows"]
    assert rows[0]["acc"] == first[0]["acc"]
    assert main(["run", RECIPE, *FAST, "--out", str(run_dir), "--resume"]) == 0
    again = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [r["acc"] for r in again] == [r["acc"] for r in first]


def test_eval_and_export(run_dir, capsys):
    assert main(["eval", str(run_dir)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["export", str(run_dir), "--format", "torchscript"]) == 0
    scripted = torch.jit.load(str(run_dir / "student.pt"))
    assert scripted(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_export_onnx(run_dir):
    onnx = pytest.importorskip("onnx")
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(run_dir / "s.onnx")]) == 0
    model = onnx.load(str(run_dir / "s.onnx"))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # batch size stays dynamic


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("kd", "dkd", "fitnet", "at", "sp", "mnist1d", "digits", "mnist", "mlp", "convnet", "resnet8", "vit_tiny"):
        assert name in out


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["distill.pairs.0.loss=kdd"], "unknown loss 'kdd'"),
        (["data.name=cifar"], "unknown dataset 'cifar'"),
        (["student.model=mlpp"], "Did you mean 'mlp'"),
        (["train.lr=fast"], "train.lr"),
        (["train.bogus=1"], "train.bogus: Extra inputs are not permitted"),
        (["distill.pairs.1.student=fc9"], "'fc1'"),
        (["train.steps"], "key=value"),
    ],
)
def test_bad_input_names_the_problem(overrides, expected, capsys, tmp_path):
    args = ["run", RECIPE, "--no-progress", "--out", str(tmp_path)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 2
    assert expected in capsys.readouterr().err


def test_missing_field_is_named(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("teacher: {model: convnet}\nstudent: {model: mlp}\ntrain: {steps: 5}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path)]) == 2
    assert "data: Field required" in capsys.readouterr().err  # distill and train have defaults; data has none


def test_eval_of_a_foreign_folder(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a distill run folder" in capsys.readouterr().err


def test_eval_text_is_refused_for_other_families(tmp_path, capsys):
    from pathlib import Path

    (tmp_path / "recipe.yaml").write_text((Path(__file__).parents[1] / "recipes" / "steps" / "reflow.yaml").read_text())
    assert main(["eval", str(tmp_path), "--text", str(tmp_path / "play.txt")]) != 0
    assert "--text scores a language model" in capsys.readouterr().err


def test_a_teacher_below_the_scratch_student_is_called_out_in_the_table_and_report(tmp_path, capsys):
    weak = ["--set", "teacher.train.steps=1", "--set", "teacher.train.eval_every=0"]
    assert main(["run", RECIPE, *FAST, *weak, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows[0]["acc"] <= rows[1]["acc"]  # one step of training: the teacher is the weakest row
    for text in (capsys.readouterr().out, (tmp_path / "report.md").read_text()):
        assert "is not above the student scratch" in " ".join(text.split()) and "train the teacher longer" in text
