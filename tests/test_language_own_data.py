"""A user's own text in the language family: the README's recipe for .txt / .jsonl files, the checks made
when such a recipe loads, ``distill eval --text`` and ``--weights``, and the layout of a run's folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from language_fixtures import make_teacher

from distill.cli import main
from distill.errors import ConfigError, DistillError
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.experiment.tasks import get_task
from distill.tasks.language.corpus import generated_text, text_files
from distill.tasks.language.run import STUDENT_FOLDER

_README = (Path(__file__).parents[1] / "README.md").read_text()
README_RECIPE = next(b for b in re.findall(r"```yaml\n(.*?)```", _README, re.S) if "corpus: files" in b)
README_COMMANDS = next(b for b in re.findall(r"```bash\n(.*?)```", _README, re.S) if "my_text.yaml" in b)
TINY = ["data.block_length=16", "data.train_blocks=24", "data.eval_blocks=4", "signals.k=8", "train.steps=4",
        "train.batch_size=4", "train.eval_every=2", "train.progress=false", "evaluate.sample_tokens=4"]
#: what `save_pretrained` of a model and its tokenizer writes, and nothing else
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json"}


def write_text(path: Path, seed: int, documents: int = 1) -> None:
    texts = generated_text(documents=documents, sentences=30, seed=seed).texts
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    else:
        path.write_text("\n\n".join(texts))


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def finished(teacher_folder, tmp_path_factory):
    """A finished run of the README's recipe on small files, and the folder holding them."""
    folder = tmp_path_factory.mktemp("own_text")
    tree = yaml.safe_load(README_RECIPE)
    for i, name in enumerate(tree["data"]["files"]):
        write_text(folder / name, seed=i + 1, documents=4 if name.endswith(".jsonl") else 1)
    tree["data"]["files"] = [str(folder / name) for name in tree["data"]["files"]]
    recipe = load_recipe(tree, [f"teacher.source={teacher_folder}", *TINY])
    table = get_task("language").run(recipe, Run(folder / "run", recipe))
    return folder, recipe, table


def test_the_readme_recipe_for_own_files_runs(finished, tmp_path, monkeypatch):
    folder, recipe, table = finished
    assert recipe.data.corpus == "files" and len(recipe.data.files) == 3 and recipe.evaluate.prompts
    assert table.rows[1]["perplexity"] > 1
    report = (folder / "run" / "report.md").read_text()
    assert all(prompt in report for prompt in recipe.evaluate.prompts)
    monkeypatch.chdir(tmp_path)  # the recipe as printed, with paths relative to the current directory
    for name in yaml.safe_load(README_RECIPE)["data"]["files"]:
        shutil.copy(folder / name, name)
    Path("my_text.yaml").write_text(README_RECIPE)
    assert load_recipe(Path("my_text.yaml")).data.files == yaml.safe_load(README_RECIPE)["data"]["files"]
    assert "distill run my_text.yaml" in README_COMMANDS and "--text" in README_COMMANDS


def test_the_student_folder_holds_the_model_alone(finished):
    run = finished[0] / "run"
    assert set(p.name for p in (run / STUDENT_FOLDER).iterdir()) <= MODEL_FILES
    assert any((run / "training" / "checkpoints").iterdir()) and (run / "training" / "metrics.csv").exists()


def test_text_files_are_checked_when_the_recipe_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_text(Path("good.txt"), 1)
    Path("empty.txt").write_text("")
    Path("notes.md").write_text("text")
    Path("folder.txt").mkdir()

    def recipe(*files):
        return load_recipe({"name": "t", "task": "language", "teacher": {"source": "no/such/teacher"},
                            "data": {"corpus": "files", "files": ["good.txt", *files]}})

    assert recipe().data.files == ["good.txt"]  # the teacher is checked later, when the run starts
    for bad, message in (("missing.txt", "missing.txt does not exist"), ("empty.txt", "empty.txt is empty"),
                         ("notes.md", "notes.md is neither .txt nor .jsonl"), ("folder.txt", "folder.txt is not a file")):
        with pytest.raises(DistillError, match=message):
            recipe(bad)


def test_empty_documents_are_named(tmp_path):
    Path(tmp_path / "blank.txt").write_text("  \n\n ")
    with pytest.raises(ConfigError, match="blank.txt is empty"):
        text_files([str(tmp_path / "blank.txt")])
    lines = [{"text": "one"}, {"text": ""}, {"text": "two"}, {"text": " \n"}]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.warns(UserWarning, match=r"docs.jsonl: 2 empty documents \(lines 2, 4\) are left out"):
        corpus = text_files([str(tmp_path / "docs.jsonl")])
    assert corpus.texts == ["one", "two"]
    (tmp_path / "none.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(ConfigError, match="none.jsonl holds no text"), pytest.warns(UserWarning):
        text_files([str(tmp_path / "none.jsonl")])


def test_eval_on_a_text_file_prints_the_teacher_and_the_token_count_and_writes_them(finished, capsys):
    folder, recipe, _ = finished
    text = folder / "another.txt"
    write_text(text, seed=9, documents=3)
    assert main(["eval", str(folder / "run"), "--text", str(text)]) == 0
    out = capsys.readouterr().out
    assert "teacher" in out and "predicted tokens" in out
    saved = json.loads((folder / "run" / "eval_another.json").read_text())
    assert [row["model"] for row in saved["rows"]] == [str(folder / "run" / STUDENT_FOLDER), "teacher"]
    assert saved["rows"][1]["agreement"] == 1.0 and saved["rows"][1]["perplexity"] > 1
    assert saved["details"]["tokens"] == saved["details"]["blocks"] * (recipe.data.block_length - 1) > 0
    assert saved["details"]["text"] == str(text)
    assert "| teacher |" in (folder / "run" / "eval_another.md").read_text()


def test_eval_text_errors_name_the_text_file(finished, capsys):
    folder = finished[0]
    (folder / "empty.txt").write_text("")
    (folder / "short.txt").write_text("Hi.")
    for name, message in (("missing.txt", "missing.txt does not exist"), ("empty.txt", "empty.txt is empty"),
                          ("short.txt", "short.txt holds")):
        assert main(["eval", str(folder / "run"), "--text", str(folder / name)]) == 2
        err = capsys.readouterr().err
        assert message in err and "--text" in err and "data.files" not in err and "lower data.block_length" not in err


def test_eval_of_truncated_weights_is_one_clear_error(finished, tmp_path, capsys):
    student = finished[0] / "run" / STUDENT_FOLDER
    for part in ("model.safetensors", "config.json"):
        broken = tmp_path / part
        shutil.copytree(student, broken)
        data = (student / part).read_bytes()
        (broken / part).write_bytes(data[: len(data) // 3])
        assert main(["eval", str(finished[0] / "run"), "--weights", str(broken)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(broken) in err and "truncated" in err


def test_a_malformed_document_is_reported_before_the_teacher_loads(tmp_path):
    from distill.tasks.language.run import prepare

    write_text(tmp_path / "good.txt", 1)
    (tmp_path / "bad.jsonl").write_text('{"body": "no text field"}\n')
    recipe = load_recipe({"name": "t", "task": "language", "teacher": {"source": str(tmp_path / "no_teacher")},
                          "data": {"corpus": "files", "files": [str(tmp_path / "good.txt"), str(tmp_path / "bad.jsonl")]}})
    with pytest.raises(ConfigError, match="bad.jsonl:1 is not a JSON object"):
        prepare(recipe)
