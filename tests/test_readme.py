"""The README's Python examples run as written."""

import re
from pathlib import Path

import torch

from distill.data import load_dataset, make_loader
from distill.models import build_model

BLOCKS = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)


def _mnist1d_namespace():
    splits = load_dataset("mnist1d")
    train_set = torch.utils.data.Subset(splits.train, range(200))
    loader = make_loader(train_set, batch_size=50, shuffle=True)
    return {"torch": torch, "loader": loader, "x_batch": next(iter(loader))[0], "train_set": splits.train}


def test_readme_library_example_runs():
    namespace = {**_mnist1d_namespace(), "student": build_model("mlp", (1, 40), 10),
                 "teacher": build_model("convnet", (1, 40), 10)}
    exec(compile(BLOCKS[0], "README.md", "exec"), namespace)
    assert isinstance(namespace["deployable"], torch.nn.Module)
    assert torch.isfinite(namespace["losses"]["total"])


def test_readme_more_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    convnet = lambda width: build_model("convnet", (1, 40), 10, channels=[width] * 3)  # noqa: E731
    namespace = {**_mnist1d_namespace(), "student": convnet(8), "teacher": convnet(16),
                 "teacher_a": convnet(16), "teacher_b": convnet(12)}
    exec(compile(BLOCKS[1], "README.md", "exec"), namespace)
    distiller = namespace["distiller"]
    distiller(namespace["x_batch"])
    assert torch.isfinite(distiller.compute_losses()["total"])
    assert (tmp_path / "teacher-cache" / "meta.json").exists()


def test_readme_step_distillation_example_runs():
    namespace = {}
    exec(compile(BLOCKS[2].replace("steps = 2000", "steps = 20"), "README.md", "exec"), namespace)
    assert namespace["samples"].shape == (1000, 2) and torch.isfinite(namespace["samples"]).all()
    assert namespace["slow"].shape == (1000, 2)


def test_readme_score_distillation_example_runs():
    namespace = {}
    block = next(b for b in BLOCKS if "GUIDANCES" in b)
    exec(compile(block.replace("steps = 200", "steps = 3"), "README.md", "exec"), namespace)
    images = namespace["images"]
    assert images.shape == (4, 1, 32, 32) and torch.isfinite(images).all()
    assert namespace["scene"].positions.grad is not None


def test_readme_scene_conversion_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    block = next(b for b in BLOCKS if "from distill.tasks.scene import" in b)
    block = block.replace("steps, size = 100, 32", "steps, size = 3, 8").replace("count=40", "count=6")
    exec(compile(block, "README.md", "exec"), namespace)
    assert len(namespace["converted"].losses) == 3 and namespace["converted"].student is namespace["field"]
    assert len(namespace["small"].student) == 64 and (tmp_path / "small.ply").is_file()


def test_readme_language_loss_example_runs():
    namespace = {}
    block = next(b for b in BLOCKS if "TopKTargets" in b)
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["loss"].item() > 0 and namespace["sparse"].item() > 0
    assert namespace["sparse"].item() <= dense_forward_kl(namespace) + 1e-5


def dense_forward_kl(namespace) -> float:
    """The dense forward KL of the README example: the top-k value never exceeds it (data processing)."""
    from distill.losses import LOSSES

    return LOSSES.build("forward_kl")(namespace["student_logits"], namespace["teacher_logits"]).item()


def test_readme_dataset_distillation_example_runs():
    namespace = {}
    block = next(b for b in BLOCKS if "condense(" in b)
    exec(compile(block, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.synthetic.images.shape == (10, 1, 8, 8) and len(result.history) == 20


def _trained_by_readme_loop(relabel) -> list[torch.Tensor]:
    torch.manual_seed(0)
    batches = [(x, relabel(y)) for x, y in _mnist1d_namespace()["loader"]]
    namespace = {"torch": torch, "loader": batches, "x_batch": batches[0][0],
                 "student": build_model("mlp", (1, 40), 10), "teacher": build_model("convnet", (1, 40), 10)}
    exec(compile(BLOCKS[0], "README.md", "exec"), namespace)
    return [p.detach() for p in namespace["deployable"].parameters()]


def test_readme_library_example_uses_the_labels():
    """The five-line loop learns from the labels as well as the teacher: other labels, another student."""
    same = _trained_by_readme_loop(lambda y: y)
    assert all(torch.equal(a, b) for a, b in zip(same, _trained_by_readme_loop(lambda y: y)))
    shifted = _trained_by_readme_loop(lambda y: (y + 1) % 10)
    assert not all(torch.equal(a, b) for a, b in zip(same, shifted))
