import copy

import pytest
import torch
import torch.nn.functional as F

from distill import Distiller, Match
from distill.errors import DistillError
from distill.losses import KDLoss, masked_cross_entropy
from distill.models import build_model


def _pair():
    torch.manual_seed(0)
    teacher = build_model("convnet", (1, 40), 10)
    student = build_model("mlp", (1, 40), 10)
    return student, teacher


def test_kd_on_outputs_matches_hand_computation():
    student, teacher = _pair()
    distiller = Distiller(student, teacher, {("output", "output"): KDLoss(temperature=2.0)})
    x = torch.randn(6, 1, 40)
    out = distiller(x)
    losses = distiller.compute_losses()
    s, t = student(x), teacher(x)
    expected = 4.0 * F.kl_div(F.log_softmax(s / 2, -1), F.log_softmax(t / 2, -1), log_target=True, reduction="batchmean")
    assert torch.equal(out, s)
    assert torch.allclose(losses["kd"], expected, atol=1e-6)
    assert torch.allclose(losses["total"], expected, atol=1e-6)


def test_teacher_is_frozen_and_stays_in_eval():
    student, teacher = _pair()
    before = copy.deepcopy(teacher.state_dict())
    distiller = Distiller(student, teacher, {("output", "output"): "kd"})
    distiller.train()
    assert not teacher.training and student.training
    assert not any(p.requires_grad for p in teacher.parameters())
    distiller(torch.randn(4, 1, 40))
    distiller.compute_losses()["total"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])


def test_weights_and_task_loss_sum_into_total():
    student, teacher = _pair()
    pairs = {("output", "output"): ("kd", 0.5), ("fc2", "conv3"): Match("sp", weight=3.0)}
    distiller = Distiller(student, teacher, pairs, task_loss=masked_cross_entropy, task_weight=2.0)
    x, y = torch.randn(8, 1, 40), torch.randint(0, 10, (8,))
    out = distiller(x)
    losses = distiller.compute_losses(y, output=out)
    expected = 0.5 * losses["kd"] + 3.0 * losses["sp"] + 2.0 * losses["task"]
    assert set(losses) == {"kd", "sp", "task", "total"}
    assert torch.allclose(losses["total"], expected)


def test_feature_projector_is_built_and_trained():
    student, teacher = _pair()
    x = torch.randn(8, 1, 40)
    distiller = Distiller(student, teacher, {("fc2", "conv3"): "fitnet"}, example_input=x)
    adapter_params = list(distiller.pairs[0].student_adapter.parameters())
    assert adapter_params, "a (B,100) -> (B,25,5) FitNet pair needs a projector"
    opt = torch.optim.Adam(distiller.parameters(), lr=0.01)
    first = None
    for _ in range(30):
        distiller(x)
        loss = distiller.compute_losses()["total"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_projector_without_example_input_is_refused():
    student, teacher = _pair()
    distiller = Distiller(student, teacher, {("fc1", "conv3:input"): "fitnet"})
    distiller(torch.randn(4, 1, 40))
    with pytest.raises(DistillError, match="example_input"):
        distiller.compute_losses()


def test_logits_of_different_classes_fail_naming_taps_and_shapes():
    torch.manual_seed(0)
    student = build_model("mlp", (1, 40), 5)
    teacher = build_model("convnet", (1, 40), 10)
    with pytest.raises(DistillError) as err:
        Distiller(student, teacher, {("output", "output"): "kd"}, example_input=torch.randn(2, 1, 40))
    assert "(2, 5)" in str(err.value) and "(2, 10)" in str(err.value) and "output" in str(err.value)


def test_bad_tap_and_loss_names():
    student, teacher = _pair()
    with pytest.raises(DistillError, match="'fc2'"):
        Distiller(student, teacher, {("fc_2", "output"): "sp"})
    with pytest.raises(DistillError, match="Valid losss|Valid loss"):
        Distiller(student, teacher, {("output", "output"): "kdd"})


def test_export_returns_bare_student():
    student, teacher = _pair()
    distiller = Distiller(student, teacher, {("output", "output"): "kd"})
    bare = distiller.export()
    assert bare is student
    assert not student._forward_hooks and not student._forward_pre_hooks
    with pytest.raises(DistillError, match="exported"):
        distiller(torch.randn(2, 1, 40))


def test_teacher_may_see_a_different_view():
    torch.manual_seed(0)
    teacher = build_model("mlp", (6, 10), 4)
    student = build_model("mlp", (3, 10), 4)
    distiller = Distiller(student, teacher, {("output", "output"): "kd"})
    x_all = torch.randn(5, 6, 10)
    distiller(x_all[:, :3], teacher_input=x_all)
    assert torch.isfinite(distiller.compute_losses()["total"])


def test_repeated_loss_names_get_the_student_tap():
    student, teacher = _pair()
    distiller = Distiller(student, teacher, {("fc1", "conv2"): "sp", ("fc2", "conv3"): "sp"})
    distiller(torch.randn(4, 1, 40))
    assert set(distiller.compute_losses()) == {"sp", "sp/fc2", "total"}


def test_warmup_ramps_a_loss_weight_over_training_passes():
    student, teacher = _pair()
    distiller = Distiller(student, teacher, {("output", "output"): Match("kd", weight=2.0, warmup=4)},
                          example_input=torch.randn(2, 1, 40))
    x = torch.randn(4, 1, 40)
    ratios = []
    for _ in range(6):
        distiller(x)
        losses = distiller.compute_losses()
        ratios.append(float(losses["total"].detach() / losses["kd"].detach()))
    assert ratios == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])
    distiller.eval()
    distiller(x)
    assert int(distiller.passes) == 6  # evaluation passes do not advance the warm-up


def test_self_distillation_turns_a_stage_into_an_exit():
    torch.manual_seed(0)
    student = build_model("mlp", (1, 40), 10)
    x = torch.randn(8, 1, 40)
    distiller = Distiller(student, "self", {("fc1", "output"): Match("kd", project=True)}, example_input=x)
    assert distiller.pairs[0].student_adapter(torch.randn(8, 100)).shape == (8, 10)
    distiller(x)
    distiller.compute_losses()["total"].backward()
    assert student.fc1.weight.grad.abs().sum() > 0
    assert student.head.weight.grad is None  # the deepest output teaches; it is not pulled back
    assert distiller.export() is student


def test_ofa_projects_cnn_stages_to_logits():
    student, teacher = _pair()  # MLP student, CNN teacher: no feature shapes in common
    x, y = torch.randn(8, 1, 40), torch.randint(0, 10, (8,))
    pairs = {("fc1", "output"): Match("ofa", project=True), ("output", "output"): Match("ofa", name="ofa/out")}
    distiller = Distiller(student, teacher, pairs, example_input=x)
    distiller(x)
    losses = distiller.compute_losses(y)
    assert set(losses) == {"ofa", "ofa/out", "total"} and torch.isfinite(losses["total"])
