"""The layer rules: shared layers import no family, families load on demand, a user's family registers
through an entry point, and a family declares its own eval / export options."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

from distill.errors import ConfigError, DistillError
from distill.experiment import tasks as tasks_module
from distill.experiment.tasks import TASKS, get_task

SRC = Path(__file__).parents[1] / "src" / "distill"
ROOT = Path(__file__).parents[1]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_shared_layer_imports_a_family():
    offenders = {str(path.relative_to(SRC)): sorted(m for m in _imported_modules(path) if m.startswith("distill.tasks"))
                 for path in SRC.rglob("*.py") if "tasks" not in path.relative_to(SRC).parts}
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_loading_a_classification_recipe_imports_no_language_or_3d_dependency():
    code = ("import sys, distill\n"
            "from distill.experiment import load_recipe\n"
            "load_recipe('recipes/digits_kd.yaml')\n"
            "import distill.tasks.classification.run\n"
            "heavy = ['transformers', 'trimesh', 'distill.tasks.language', 'distill.tasks.score', 'distill.tasks.steps',"
            " 'distill.tasks.dataset']\n"
            "print(','.join(m for m in heavy if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_command_line_starts_without_torch():
    code = "import sys, distill.cli\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_every_builtin_family_is_listed_before_it_is_imported():
    assert set(tasks_module.BUILTIN_FAMILIES) <= set(TASKS.names())
    assert "classification" in TASKS and "nothing" not in TASKS
    with pytest.raises(DistillError, match="unknown task 'clasification'.*Did you mean 'classification'"):
        get_task("clasification")


class _EntryPoint:
    def __init__(self, name: str, module: str) -> None:
        self.name, self.module = name, module


USER_FAMILY = """
from distill.experiment.tasks import Task, TaskOption, register_task


class EchoTask(Task):
    \"\"\"A user's own family.\"\"\"

    name = "echo"
    eval_options = (TaskOption("--times", "times", "repeats the echo", "N", int),)


register_task(EchoTask())
"""


def test_a_users_family_registers_through_an_entry_point(tmp_path, monkeypatch):
    (tmp_path / "my_family_task.py").write_text(USER_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(tasks_module, "entry_points", lambda group: [_EntryPoint("echo", "my_family_task")]
                        if group == tasks_module.ENTRY_POINT_GROUP else [])
    try:
        assert "echo" in TASKS.names() and "my_family_task" not in sys.modules  # listed, not yet imported
        task = get_task("echo")
        assert task.parse_options("eval", ["--times", "3"]) == {"times": 3}
        assert "eval --times N: repeats the echo" in TASKS.describe("echo")
    finally:
        TASKS._entries.pop("echo", None)
        sys.modules.pop("my_family_task", None)


def test_an_entry_point_that_registers_nothing_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "empty_family_task", types.ModuleType("empty_family_task"))
    monkeypatch.setattr(tasks_module, "entry_points", lambda group: [_EntryPoint("ghost", "empty_family_task")])
    with pytest.raises(ConfigError, match="empty_family_task was named for family 'ghost'"):
        get_task("ghost")


def test_a_family_refuses_an_option_it_does_not_declare_and_names_its_own():
    with pytest.raises(ConfigError, match="a dataset run does not take --text.*language runs.*it takes --network NAME"):
        get_task("dataset").parse_options("eval", ["--text", "play.txt"])
    assert get_task("dataset").parse_options("eval", ["--network", "mlp"]) == {"network": "mlp"}
    assert get_task("classification").parse_options("export", []) == {}


def test_readme_examples_import_only_public_names():
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```python\n")[1:]
    modules = set()
    for block in blocks:
        tree = ast.parse(block.split("```")[0])
        modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    family_internals = {m for m in modules if m.startswith("distill.tasks.") and m.count(".") > 2}
    layer_internals = {m for m in modules if m.startswith("distill.") and not m.startswith("distill.tasks.")
                       and m.count(".") > 1 and m.split(".")[1] not in ("metrics", "engine")}
    assert modules and family_internals == set() and layer_internals == set()
