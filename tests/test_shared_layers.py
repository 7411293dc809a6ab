"""The diffusion and metrics layers: one CFG helper, one denoising loss, one accuracy, and imports that
never reach a family."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

import distill
from distill.diffusion.cfg import NULL_CLASS, conditional_and_null, guided
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.exact import ClassConditionalExactDenoiser
from distill.diffusion.nets import build_denoiser
from distill.diffusion.objective import DenoisingObjective, denoising_loss
from distill.diffusion.process import build_process
from distill.metrics.classification import accuracy, batch_accuracy, hits
from distill.metrics.cost import parameter_count


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(Path(distill.__file__).parents[1])}  # this checkout's sources
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return set(out.split())


def test_the_diffusion_and_metrics_layers_import_no_family_and_no_experiment():
    modules = _imported_after("import distill.diffusion.teacher, distill.diffusion.recipe, distill.metrics.scorer, "
                              "distill.metrics.classifier")
    assert not {m for m in modules if m.startswith(("distill.tasks", "distill.experiment"))}


def test_accuracy_and_cost_need_no_optimal_transport():
    assert "ot" not in _imported_after("import distill.metrics.classification, distill.metrics.cost")


def test_conditional_and_null_doubles_the_batch_with_the_null_class():
    seen = []

    def call(x, t, y, d):
        seen.append(y)
        return x * (y[:, None] + 2).float(), -x

    x, t, y = torch.ones(3, 2), torch.rand(3), torch.tensor([0, 1, 2])
    (cond, cond_b), (null, null_b) = conditional_and_null(call, x, t, y)
    assert seen[0].tolist() == [0, 1, 2] + [NULL_CLASS] * 3
    assert torch.equal(cond[:, 0], torch.tensor([2.0, 3.0, 4.0])) and torch.equal(null, torch.ones(3, 2))
    assert torch.equal(cond_b, null_b)
    assert torch.equal(guided(cond, null, torch.tensor([0.0, 1.0, 2.0]))[:, 0], torch.tensor([1.0, 3.0, 7.0]))


def test_the_network_and_the_exact_prior_read_the_null_class_alike():
    net = build_denoiser("mlp", (2,), 3)
    x, t = torch.randn(4, 2), torch.rand(4)
    assert torch.equal(net(x, t, torch.full((4,), NULL_CLASS)), net(x, t, torch.full((4,), 3)))
    points, labels = torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), torch.tensor([0, 1])
    prior = ClassConditionalExactDenoiser(points, labels, build_process("flow"), 2)
    null = prior.split(torch.zeros(1, 2), torch.full((1,), 0.5), torch.tensor([NULL_CLASS]))[0]
    assert torch.allclose(null, torch.zeros(1, 2), atol=1e-6)  # the whole set: both points, equally likely


def test_the_teacher_objective_is_the_shared_denoising_loss():
    torch.manual_seed(0)
    denoiser = Denoiser(build_denoiser("mlp", (2,), 3), build_process("flow"), "velocity", 3)
    batch = {"x": torch.randn(16, 2), "y": torch.randint(3, (16,))}
    torch.manual_seed(1)
    loss = DenoisingObjective(denoiser, cond_drop=0.2)(batch)["loss"]
    torch.manual_seed(1)
    assert torch.equal(loss, denoising_loss(denoiser, batch["x"], batch["y"], 0.2))
    t = torch.full((16,), 0.3)
    assert denoising_loss(denoiser, batch["x"], None, t=t) > 0


def test_one_accuracy_for_batches_tensors_and_ignored_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 0, -100, 1])
    correct, labelled = hits(logits, target)
    assert (int(correct), int(labelled)) == (2, 3)
    assert torch.isclose(batch_accuracy(logits, target), torch.tensor(2 / 3))
    model = nn.Identity()
    assert accuracy(model, logits, torch.tensor([0, 0, 0, 1]), batch_size=3) == 0.75


def test_parameter_count_counts_tied_weights_once():
    shared = nn.Linear(3, 3)
    assert parameter_count(nn.Sequential(shared, shared)) == 12
