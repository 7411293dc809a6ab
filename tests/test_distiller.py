import copy
import gc
import warnings
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill import Distiller, Match
from distill.errors import ConfigError, DistillError
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
    with pytest.raises(DistillError, match="unknown loss 'kdd'.*Valid choices: "):
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


class _HeadsTeacher(nn.Module):
    """A teacher whose logits come from an nn.Linear deep inside: ``heads.cls``."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.ReLU())
        self.heads = nn.ModuleDict({"cls": nn.Linear(16, 10)})

    def forward(self, x):
        return self.heads["cls"](self.body(x))


def _params(module):
    return sum(p.numel() for p in module.parameters())


def test_equal_vectors_from_a_linear_need_no_projector():
    torch.manual_seed(0)
    student, teacher = build_model("mlp", (1, 40), 10), _HeadsTeacher()
    x = torch.randn(4, 1, 40)
    distiller = Distiller(student, teacher, {("output", "heads.cls"): "kd", ("head", "output"): "fitnet"},
                          example_input=x)
    assert all(_params(p.student_adapter) == 0 for p in distiller.pairs)
    distiller(x)
    assert torch.isfinite(distiller.compute_losses()["total"])


def test_project_on_equal_shapes_builds_a_trainable_projector():
    student, teacher = _pair()
    x = torch.randn(4, 1, 40)
    distiller = Distiller(student, teacher, {("output", "output"): Match("kd", project=True)}, example_input=x)
    assert _params(distiller.pairs[0].student_adapter) == 10 * 10 + 10
    distiller(x)
    distiller.compute_losses()["total"].backward()
    assert distiller.pairs[0].student_adapter[0].weight.grad is not None


@pytest.mark.parametrize("field", ["student_layout", "teacher_layout"])
def test_match_refuses_an_undeclared_layout(field):
    with pytest.raises(ConfigError) as err:
        Match("kd", **{field: "token"})
    message = str(err.value)
    assert field in message and "'token'" in message and "'tokens'" in message and "channels_first" in message


def _hook_count(*models):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for model in models for m in model.modules())


class _DictNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.fc = nn.Linear(40, classes)

    def forward(self, x):
        return {"logits": self.fc(x.flatten(1))}


@pytest.mark.parametrize(
    "make, pairs",
    [
        (_pair, {("fc1", "conv2"): "sp", (("fc1", "fc2"), ("conv2", "conv_3")): "reviewkd"}),  # second tap wrong
        (_pair, {("fc1", "conv2"): "sp", (("fc1", "fc_2"), ("conv2", "conv3")): "reviewkd"}),  # second student tap
        (_pair, {("fc1", "conv2"): "sp", ("output", "output"): Match("kd", options={"temprature": 2})}),  # loss
        (_pair, {("fc1", "conv2"): "sp", (("fc1", "fc2"), ("conv3",)): "reviewkd"}),  # loss setup fails
        (lambda: (build_model("mlp", (1, 40), 5), build_model("convnet", (1, 40), 10)),
         {("fc1", "conv2"): "sp", ("output", "output"): "kd"}),  # the adapters' dummy pass fails
        (lambda: (_DictNet(), _DictNet()), {("output[0]", "output[logits]"): "kd"}),  # a missing key
    ],
)
def test_failed_construction_leaves_no_hooks(make, pairs):
    torch.manual_seed(0)
    student, teacher = make()
    x = torch.randn(2, 1, 40)
    with pytest.raises(DistillError):
        Distiller(student, teacher, pairs, example_input=x)
    assert _hook_count(student, teacher) == 0
    student(x), teacher(x)


def test_dict_outputs_distil_by_key():
    torch.manual_seed(0)
    student, teacher = _DictNet(), _DictNet()
    distiller = Distiller(student, teacher, {("output[logits]", "output[logits]"): "kd"},
                          example_input=torch.randn(2, 1, 40))
    out = distiller(torch.randn(3, 1, 40))
    assert set(out) == {"logits"}
    assert torch.isfinite(distiller.compute_losses()["total"])


@pytest.mark.parametrize("task_weight", [None, 0.0])
def test_nothing_to_optimise_is_refused(task_weight):
    student, teacher = _pair()
    task = {} if task_weight is None else {"task_loss": masked_cross_entropy, "task_weight": task_weight}
    with pytest.raises(DistillError, match="nothing to train"):
        Distiller(student, teacher, {}, **task)


def test_dropped_distillers_take_their_hooks_and_activations_with_them():
    """A sweep that builds and drops Distillers leaves the user's models as they were (issue 24)."""
    student, teacher = _pair()
    pairs = {("output", "output"): "kd", ("fc2", "conv3"): ("fitnet", 0.5)}
    x = torch.randn(8, 1, 40)
    outputs = []
    for _ in range(30):
        distiller = Distiller(student, teacher, pairs, example_input=x[:2])
        outputs.append(weakref.ref(distiller(x)))  # recorded by the output tap, with its autograd graph
        distiller.compute_losses(target=torch.zeros(8, dtype=torch.long))["total"].backward()
        dropped = weakref.ref(distiller)
        del distiller
        assert dropped() is None  # no reference cycle keeps a dropped Distiller alive
    gc.collect()
    assert _hook_count(student, teacher) == 0
    assert all(ref() is None for ref in outputs)


def test_projector_need_without_example_input_is_refused_at_build_and_leaves_no_hooks():
    student, teacher = _pair()
    for pairs in ({("fc1", "output"): Match("kd", project=True)}, {("fc1", "conv3"): "crd"}):
        with pytest.raises(DistillError, match="example_input"):
            Distiller(student, teacher, pairs)
        assert _hook_count(student, teacher) == 0


@pytest.mark.parametrize(
    "make, pairs",
    [
        (lambda: (_DictNet(), _DictNet()), {("output[logit]", "output[logits]"): "kd"}),  # a wrong dict key
        (_pair, {("fc1", "conv3:input"): "fitnet"}),  # a projector, and no example_input to build it
    ],
)
def test_a_configuration_error_at_the_first_compute_losses_removes_the_hooks(make, pairs):
    student, teacher = make()
    distiller = Distiller(student, teacher, pairs)
    distiller(torch.randn(4, 1, 40))
    with pytest.raises(DistillError):
        distiller.compute_losses()
    assert _hook_count(student, teacher) == 0
    with pytest.raises(DistillError, match="build a new one"):
        distiller(torch.randn(4, 1, 40))


def test_compute_losses_before_any_forward_pass_keeps_the_distiller_usable():
    student, teacher = _pair()
    distiller = Distiller(student, teacher, {("output", "output"): "kd"})
    with pytest.raises(DistillError, match="forward pass"):
        distiller.compute_losses()
    distiller(torch.randn(4, 1, 40))
    assert torch.isfinite(distiller.compute_losses()["total"])


class _Flat(nn.Module):
    """A student whose 8-wide features a pair regresses onto a teacher's whole (32, 12, 12) map."""

    def __init__(self):
        super().__init__()
        self.features = nn.Linear(40, 8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.features(x.flatten(1)).relu())


class _Maps(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 32, 3, padding=1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.conv(x.view(-1, 1, 1, 40)[..., :12].expand(-1, 1, 12, 12)).mean((2, 3)))


def test_a_projector_larger_than_the_student_is_named_at_build():
    with pytest.warns(UserWarning) as caught:
        Distiller(_Flat(), _Maps(), {("features", "conv"): "fitnet"}, example_input=torch.randn(2, 1, 40))
    message = str(caught[-1].message)
    assert "features" in message and "conv" in message and "fitnet" in message
    assert "Linear(8 → 4608)" in message and "41,472" in message and "\n" not in message


def test_projectors_smaller_than_the_student_are_inferred_quietly():
    student, teacher = _pair()  # Linear(100 → 125) + Unflatten: 12,625 parameters, the student 15,210
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Distiller(student, teacher, {("fc2", "conv3"): "fitnet"}, example_input=torch.randn(2, 1, 40))


def test_a_dropped_copy_takes_its_own_hooks_with_it():
    student, teacher = _pair()
    distiller = Distiller(student, teacher, {("output", "output"): "kd", ("fc1", "conv2"): "sp"})
    clone = copy.deepcopy(distiller)
    models = (clone.student, clone.teacher)
    del clone
    gc.collect()
    assert _hook_count(*models) == 0 and _hook_count(student, teacher) == 4
