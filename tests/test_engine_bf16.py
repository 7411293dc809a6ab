"""bf16 autocast on the CPU with a Distiller, through the engine.

Under ``mixed_precision="bf16"`` the models' matmuls run in bfloat16, so the logits a
loss receives are bf16; the weights, the optimizer and the KD loss must stay float32
(``soft_kl`` upcasts before its softmaxes: in bf16, with its 8 bits of mantissa, the
KL between close distributions would be mostly rounding error).
"""

import pytest
import torch

from distill import Distiller, Match
from distill.engine.checkpoint import latest_checkpoint, load_checkpoint
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.losses.kd import KDLoss
from distill.models import build_model
from distill.tasks.classification.objectives import DistillObjective, SupervisedObjective


class RecordingKD(KDLoss):
    """KD that keeps what it was given and what it returned at each call."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def forward(self, student, teacher, target=None, **kwargs):
        loss = super().forward(student, teacher, target, **kwargs)
        self.calls.append((student.detach().clone(), teacher.detach().clone(), target.clone(), loss.detach().clone()))
        return loss


def _config(**overrides) -> TrainConfig:
    base = dict(steps=30, batch_size=64, lr=0.01, log_every=5, checkpoint_every=30, progress=False, seed=2)
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def teacher(digits, tmp_path_factory):
    torch.set_num_threads(1)  # conftest's autouse fixture runs after module-scoped ones
    torch.manual_seed(1)
    net = build_model("convnet", (1, 8, 8), 10, channels=[8, 16, 16])
    train(SupervisedObjective(net), digits.train, _config(steps=40, checkpoint_every=0), tmp_path_factory.mktemp("t"))
    return net.eval()


def _distil(teacher, digits, folder, precision: str):
    torch.manual_seed(0)
    student = build_model("mlp", (1, 8, 8), 10, hidden=[32])
    kd = RecordingKD(temperature=4.0, alpha=0.9)
    objective = DistillObjective(Distiller(student, teacher, {("output", "output"): Match(kd)}))
    result = train(objective, digits.train, _config(mixed_precision=precision), folder)
    return student, kd, result


@pytest.fixture(scope="module")
def runs(teacher, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bf16")
    return {precision: (*_distil(teacher, digits, folder / precision, precision), folder / precision)
            for precision in ("bf16", "no")}


def test_bf16_distillation_is_finite_and_learns(runs):
    _, kd, result, _ = runs["bf16"]
    losses = [row["train_loss"] for row in result.history if "train_loss" in row]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]
    assert all(torch.isfinite(loss) for *_, loss in kd.calls) and len(kd.calls) == 30
    _, _, fp32, _ = runs["no"]
    assert result.final["train_loss"] == pytest.approx(fp32.final["train_loss"], rel=0.02)  # bf16 costs little


def test_autocast_reaches_the_models_but_not_the_weights(runs):
    student, kd, _, folder = runs["bf16"]
    for student_logits, teacher_logits, *_ in kd.calls:
        assert student_logits.dtype == teacher_logits.dtype == torch.bfloat16  # autocast was on
    assert all(p.dtype == torch.float32 for p in student.parameters())
    saved = load_checkpoint(latest_checkpoint(folder / "checkpoints"))
    assert saved.step == 30
    assert {w.dtype for k, w in saved.weights.items() if k != "distiller.passes"} == {torch.float32}
    adam = saved.state["optimizers"]["model"]["state"]
    assert adam and all(s["exp_avg"].dtype == s["exp_avg_sq"].dtype == torch.float32 for s in adam.values())
    _, fp32_kd, _, _ = runs["no"]
    assert {s.dtype for s, *_ in fp32_kd.calls} == {torch.float32}  # without autocast nothing is bf16


def test_kd_is_computed_in_float32_from_bf16_logits(runs):
    _, kd, _, _ = runs["bf16"]
    reference = KDLoss(temperature=4.0, alpha=0.9)
    for student_logits, teacher_logits, target, loss in kd.calls:
        assert loss.dtype == torch.float32
        expected = reference(student_logits.float(), teacher_logits.float(), target)  # outside autocast: float32
        assert torch.allclose(loss, expected, rtol=1e-6, atol=1e-7)
    # the same KL taken in bf16 throughout is visibly off: the float32 check above is not vacuous
    s, t, target, loss = kd.calls[-1]
    log_s, log_t = s.div(4).log_softmax(-1), t.div(4).log_softmax(-1)
    soft_in_bf16 = 0.9 * (16 * (log_t.exp() * (log_t - log_s)).sum(-1)).mean()
    soft = loss - 0.1 * torch.nn.functional.cross_entropy(s.float(), target)
    assert soft_in_bf16.dtype == torch.bfloat16
    assert not torch.allclose(soft_in_bf16.float(), soft, rtol=1e-3, atol=0)
