"""How the Distiller calls the two models (arguments, keyword renames) and passes masks to losses."""

import pytest
import torch
from torch import nn

from distill import Distiller, Match
from distill.errors import DistillError
from distill.losses import KDLoss, masked_cross_entropy


class TokenModel(nn.Module):
    """A toy language model: ``forward(input_ids, attention_mask=None, scale=1.0)`` → (B, L, V) logits."""

    def __init__(self, vocab=7, dim=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lm_head = nn.Linear(dim, vocab)
        self.calls = []

    def forward(self, input_ids, attention_mask=None, scale=1.0):
        self.calls.append({"input_ids": input_ids, "attention_mask": attention_mask, "scale": scale})
        return self.lm_head(self.embed(input_ids)) * scale


class RenamedTeacher(TokenModel):
    """The same model, but its mask argument is called ``mask`` and it takes no ``scale``."""

    def forward(self, input_ids, mask=None):
        self.calls.append({"input_ids": input_ids, "mask": mask})
        return self.lm_head(self.embed(input_ids))


def _ids(batch=2, length=3):
    return torch.randint(0, 7, (batch, length))


def test_positional_and_keyword_arguments_reach_both_models():
    student, teacher = TokenModel(), TokenModel()
    distiller = Distiller(student, teacher, {("output", "output"): "kd"})
    ids, mask = _ids(), torch.ones(2, 3, dtype=torch.bool)
    out = distiller(ids, attention_mask=mask, scale=2.0)
    for model in (student, teacher):
        call = model.calls[-1]
        assert call["input_ids"] is ids and call["attention_mask"] is mask and call["scale"] == 2.0
    assert torch.equal(out, student.lm_head(student.embed(ids)) * 2.0)


def test_keyword_arguments_renamed_or_dropped_for_the_teacher():
    student, teacher = TokenModel(), RenamedTeacher()
    distiller = Distiller(student, teacher, {("output", "output"): "kd"},
                          teacher_kwargs_map={"attention_mask": "mask", "scale": None})
    ids, mask = _ids(), torch.ones(2, 3, dtype=torch.bool)
    distiller(ids, attention_mask=mask, scale=3.0)
    assert teacher.calls[-1] == {"input_ids": ids, "mask": mask}
    assert student.calls[-1]["scale"] == 3.0


def test_renaming_onto_an_existing_keyword_is_refused():
    distiller = Distiller(TokenModel(), RenamedTeacher(), {("output", "output"): "kd"},
                          teacher_kwargs_map={"attention_mask": "mask"})
    with pytest.raises(DistillError, match="'mask'"):
        distiller(_ids(), attention_mask=None, mask=None)


def test_teacher_kwargs_map_is_checked():
    with pytest.raises(DistillError, match="teacher_kwargs_map"):
        Distiller(TokenModel(), TokenModel(), {("output", "output"): "kd"}, teacher_kwargs_map={"scale": 2})


@pytest.mark.parametrize(
    "teacher_input, expected",
    [
        (torch.tensor([[1, 2, 3]]), lambda t: ((t,), {})),
        ((torch.tensor([[1, 2, 3]]), None, 0.5), lambda t: (t, {})),
        ({"input_ids": torch.tensor([[1, 2, 3]]), "scale": 0.5}, lambda t: ((), t)),
    ],
)
def test_teacher_input_forms(teacher_input, expected):
    seen = []

    class Recording(TokenModel):
        def forward(self, *args, **kwargs):
            seen.append((args, kwargs))
            return super().forward(*args, **kwargs)

    distiller = Distiller(TokenModel(), Recording(), {("output", "output"): "kd"})
    distiller(torch.tensor([[4, 5, 6]]), scale=2.0, teacher_input=teacher_input)
    args, kwargs = expected(teacher_input)
    assert len(seen[-1][0]) == len(args) and all(a is b for a, b in zip(seen[-1][0], args))
    assert seen[-1][1] == kwargs


@pytest.mark.parametrize("example", ["tensor", "tuple", "dict"])
def test_example_input_forms(example):
    ids = _ids()
    example_input = {"tensor": ids, "tuple": (ids, None, 2.0), "dict": {"input_ids": ids, "scale": 2.0}}[example]
    student, teacher = TokenModel(), TokenModel(dim=6)
    distiller = Distiller(student, teacher, {("embed", "embed"): "fitnet"}, example_input=example_input)
    assert student.calls[-1]["input_ids"] is ids and teacher.calls[-1]["input_ids"] is ids
    assert student.calls[-1]["scale"] == (1.0 if example == "tensor" else 2.0)
    assert any(True for _ in distiller.pairs[0].student_adapter.parameters())


def test_example_teacher_input_may_be_keywords():
    student, teacher = TokenModel(), RenamedTeacher(dim=6)
    ids = _ids()
    Distiller(student, teacher, {("embed", "embed"): "fitnet"}, example_input={"input_ids": ids, "scale": 2.0},
              example_teacher_input={"input_ids": ids, "mask": None})
    assert teacher.calls[-1] == {"input_ids": ids, "mask": None}


# --- masks ------------------------------------------------------------------------------


def test_mask_leaves_padded_tokens_out_of_kd():
    torch.manual_seed(0)
    student, teacher = TokenModel(), TokenModel()
    distiller = Distiller(student, teacher, {("output", "output"): KDLoss(temperature=2.0, alpha=0.5)})
    ids, y = _ids(2, 4), torch.randint(0, 7, (2, 4))
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    distiller(ids)
    masked = distiller.compute_losses(y, mask=mask)["kd"]
    s, t = student(ids), teacher(ids)
    assert torch.allclose(masked, KDLoss(temperature=2.0, alpha=0.5)(s[mask], t[mask], y[mask]), atol=1e-6)

    padded = ids.clone()
    padded[~mask] = 6  # whatever sits at padded positions must not change the loss
    distiller(padded)
    assert torch.allclose(distiller.compute_losses(y, mask=mask)["kd"], masked, atol=1e-6)


def test_mask_with_task_loss_and_output():
    student, teacher = TokenModel(), TokenModel()
    distiller = Distiller(student, teacher, {("output", "output"): "lskd"}, task_loss=masked_cross_entropy)
    ids, y = _ids(), torch.randint(0, 7, (2, 3))
    out = distiller(ids)
    losses = distiller.compute_losses(y, output=out, mask=torch.ones(2, 3, dtype=torch.bool))
    assert set(losses) == {"lskd", "task", "total"} and torch.isfinite(losses["total"])


def test_mask_on_a_loss_without_mask_support_names_it():
    student, teacher = TokenModel(), TokenModel()
    pairs = {("output", "output"): "kd", ("embed", "embed"): Match("fitnet", name="hint")}
    distiller = Distiller(student, teacher, pairs)
    distiller(_ids())
    with pytest.raises(DistillError) as err:
        distiller.compute_losses(mask=torch.ones(2, 3, dtype=torch.bool))
    message = str(err.value)
    assert "'hint'" in message and "fitnet" in message and "'kd'" in message
