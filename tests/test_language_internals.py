"""Hidden-state matching and MiniLM self-attention relations for language students of another width."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from language_fixtures import make_teacher

from distill.errors import ConfigError, DistillError
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.experiment.tasks import get_task
from distill.losses import LOSSES
from distill.losses.minilm import AttentionRelationLoss
from distill.tasks.language.methods.internals import (
    HiddenStateMatching,
    InternalMatching,
    RelationMatching,
    uniform_layer_map,
)
from distill.tasks.language.models import build_student, load_causal_lm
from distill.tasks.language.objectives import LanguageObjective


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return load_causal_lm(make_teacher(tmp_path_factory.mktemp("teacher")))


def _log_softmax(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def test_relation_loss_matches_hand_computation():
    s = np.array([[1.0, 0.0], [0.5, 2.0]])
    t = np.array([[0.0, 1.0], [1.0, 1.0], ])
    # causal: position 0 relates to itself only (KL 0); position 1 to positions 0 and 1
    log_p = _log_softmax(t[1] @ t[:2].T / np.sqrt(2))
    log_q = _log_softmax(s[1] @ s[:2].T / np.sqrt(2))
    row1 = float((np.exp(log_p) * (log_p - log_q)).sum())
    loss = AttentionRelationLoss(heads=1)
    got = loss(torch.tensor(s[None], dtype=torch.float32), torch.tensor(t[None], dtype=torch.float32))
    assert got.item() == pytest.approx(row1 / 2, rel=1e-5)
    only_second = loss(torch.tensor(s[None]).float(), torch.tensor(t[None]).float(), mask=torch.tensor([[False, True]]))
    assert only_second.item() == pytest.approx(row1, rel=1e-5)


def test_relation_loss_compares_models_of_different_widths():
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 12)
    loss = AttentionRelationLoss(heads=2)
    assert loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
    # a teacher whose 6-dim relation heads span 4 dims, and a student of width 8 (4 per head) with the same
    # scaled Gram matrices: their relations agree exactly, though the widths differ
    u = torch.randn(2, 5, 2, 4)
    basis = torch.linalg.qr(torch.randn(6, 4))[0].T  # (4, 6), orthonormal rows
    teacher = (u @ basis).flatten(2)
    student = (u * (2 / 6 ** 0.5) ** 0.5).flatten(2)
    assert loss(student, teacher).item() == pytest.approx(0.0, abs=1e-5)
    wide = torch.randn(2, 5, 8)
    assert loss(wide, teacher).item() > 0.01
    with pytest.raises(ConfigError, match="not divisible by heads=3"):
        AttentionRelationLoss(heads=3)(wide, teacher)
    with pytest.raises(DistillError, match="same batch and length"):
        loss(torch.randn(2, 4, 8), teacher)


def test_relations_are_causal():
    torch.manual_seed(1)
    s, t = torch.randn(1, 4, 4), torch.randn(1, 4, 4)
    first_rows = torch.tensor([[True, True, False, False]])
    loss = AttentionRelationLoss(heads=2)
    changed = s.clone()
    changed[0, 3] += 5.0  # a later position cannot change what the first two relate to
    assert loss(changed, t, mask=first_rows).item() == pytest.approx(loss(s, t, mask=first_rows).item(), abs=1e-6)
    assert loss(changed, t).item() != pytest.approx(loss(s, t).item(), abs=1e-4)
    acausal = AttentionRelationLoss(heads=2, causal=False)
    assert acausal(changed, t, mask=first_rows).item() != pytest.approx(acausal(s, t, mask=first_rows).item(), abs=1e-4)


def test_uniform_layer_map():
    assert uniform_layer_map(2, 30) == [(1, 15), (2, 30)]
    assert uniform_layer_map(3, 30) == [(1, 10), (2, 20), (3, 30)]
    assert uniform_layer_map(4, 4) == [(1, 1), (2, 2), (3, 3), (4, 4)]


def test_hidden_state_matching_projects_the_student(teacher):
    student = build_student(teacher, "tiny", 16)  # width 64 against the teacher's 32
    matching = HiddenStateMatching([(2, 1), (-1, -1)], student.config, teacher.config, length=16)
    assert matching.pairs == [(2, 1), (2, 2)]
    ids = torch.randint(0, teacher.config.vocab_size, (2, 16))
    s_out, t_out = student(input_ids=ids, output_hidden_states=True), teacher(input_ids=ids, output_hidden_states=True)
    got = matching(s_out.hidden_states, t_out.hidden_states)
    target = F.layer_norm(t_out.hidden_states[1], (32,))
    projected = matching.adapters[0](s_out.hidden_states[2])
    assert projected.shape == (2, 16, 32)
    expected = (F.mse_loss(projected, target) + F.mse_loss(matching.adapters[1](s_out.hidden_states[2]),
                                                             F.layer_norm(t_out.hidden_states[2], (32,)))) / 2
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in matching.adapters.parameters())
    with pytest.raises(ConfigError, match="teacher layer 3 is out of range"):
        HiddenStateMatching([(1, 3)], student.config, teacher.config, length=16)


def test_relation_heads_must_divide_both_models(teacher):
    student = build_student(teacher, "tiny", 16)
    with pytest.raises(ConfigError, match="heads=3 does not divide"):
        RelationMatching(student, teacher, -1, -1, heads=3)
    with pytest.raises(ConfigError, match="student_layer 5 is out of range"):
        RelationMatching(student, teacher, 5, -1, heads=2)


def test_objective_trains_student_and_projector_towards_the_teacher(teacher):
    torch.manual_seed(0)
    student = build_student(teacher, "tiny", 16)
    internals = InternalMatching(HiddenStateMatching(uniform_layer_map(2, 2), student.config, teacher.config, 16), 1.0,
                                 RelationMatching(student, teacher, -1, -1, heads=4), 1.0)
    objective = LanguageObjective(student, None, teacher=teacher, internals=internals)
    batch = {"input_ids": torch.randint(0, teacher.config.vocab_size, (4, 16)), "row": torch.arange(4)}
    trainable = [p for p in objective.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in teacher.parameters())
    assert {id(p) for p in internals.hidden.adapters.parameters()} <= {id(p) for p in trainable}
    optimizer = torch.optim.Adam(trainable, lr=3e-3)
    first = None
    for _ in range(25):
        out = objective(batch)
        first = first or {k: out[k].item() for k in ("hidden", "relations")}
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert set(out) >= {"loss", "hidden", "relations"}
    assert out["hidden"].item() < 0.8 * first["hidden"] and out["relations"].item() < 0.8 * first["relations"]
    with pytest.raises(ConfigError, match="need the live teacher"):
        LanguageObjective(student, None, internals=internals)


def recipe_tree(folder, method):
    return {"name": "lm_internals", "task": "language", "teacher": {"source": str(folder)}, "student": {"preset": "tiny"},
            "data": {"corpus": "generated", "block_length": 16, "train_blocks": 24, "eval_blocks": 6},
            "signals": {"source": "live"}, "method": method,
            "train": {"steps": 4, "batch_size": 4, "lr": 0.01, "eval_every": 2, "progress": False},
            "evaluate": {"prompts": ["The king"], "sample_tokens": 4}}


def test_recipe_refuses_internals_without_the_live_teacher(tmp_path):
    tree = recipe_tree(tmp_path, {"loss": "forward_kl", "hidden": {}})
    with pytest.raises(DistillError, match="set signals.source: live"):
        load_recipe({**tree, "signals": {"source": "cache"}})
    with pytest.raises(DistillError, match="hidden and relations do not apply"):
        load_recipe({**tree, "method": {"loss": "ce", "sequence_kd": True, "relations": {}}})


def test_run_with_hidden_states_and_relations(tmp_path):
    folder = make_teacher(tmp_path / "teacher")
    recipe = load_recipe(recipe_tree(folder, {"loss": "forward_kl", "hidden": {"weight": 0.5},
                                              "relations": {"heads": 2}}))
    get_task("language").run(recipe, Run(tmp_path / "run", recipe))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["rows"][1]["perplexity"] > 1
    assert (tmp_path / "run" / "student" / "config.json").exists()
    bad = load_recipe(recipe_tree(folder, {"loss": "forward_kl", "relations": {"heads": 5}}))
    with pytest.raises(ConfigError, match="heads=5 does not divide"):
        get_task("language").run(bad, Run(tmp_path / "bad", bad))
    assert not (tmp_path / "bad" / "student").exists()


def test_hidden_state_taps_capture_the_models_hidden_states(teacher):
    from distill.taps import TapRecorder, parse_tap
    from distill.tasks.language.methods.internals import hidden_state_taps

    for model in (teacher, build_student(teacher, "tiny", 16)):
        specs = [parse_tap(t) for t in hidden_state_taps(model.config.num_hidden_layers)]
        recorder = TapRecorder(model, specs)
        out = model(input_ids=torch.randint(0, teacher.config.vocab_size, (2, 16)), output_hidden_states=True)
        assert len(specs) == len(out.hidden_states)
        for spec, state in zip(specs, out.hidden_states):
            assert torch.equal(recorder.get(spec), state)
        recorder.remove()


def test_internal_terms_are_distiller_pairs_with_one_teacher_pass(teacher):
    torch.manual_seed(0)
    student = build_student(teacher, "tiny", 16)
    hidden = HiddenStateMatching([(1, 1), (2, 2)], student.config, teacher.config, 16)
    internals = InternalMatching(hidden, 0.5, RelationMatching(student, teacher, -1, -1, heads=2), 2.0)
    objective = LanguageObjective(student, LOSSES.build("forward_kl"), teacher=teacher, internals=internals)
    calls = []
    handle = teacher.register_forward_hook(lambda *args: calls.append(1))
    ids = torch.randint(0, teacher.config.vocab_size, (2, 16))
    out = objective({"input_ids": ids, "row": torch.arange(2)})
    handle.remove()
    assert len(calls) == 1  # the token targets come from the Distiller's teacher pass
    s_out, t_out = student(input_ids=ids, output_hidden_states=True), teacher(input_ids=ids, output_hidden_states=True)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[:, -1] = False
    token = LOSSES.build("forward_kl")(s_out.logits, t_out.logits, mask=mask)
    masked_hidden = hidden(s_out.hidden_states, t_out.hidden_states, mask=mask)
    assert out["hidden"].item() == pytest.approx(masked_hidden.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(token.item() + 0.5 * masked_hidden.item() + 2.0 * out["relations"].item(),
                                               rel=1e-5)
