"""The chunked LM head and loss (``method.chunk_tokens``): the same loss and gradients as the whole batch at once,
for every token loss and target kind, without keeping the batch's logits for backward."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from language_fixtures import make_teacher

from distill.errors import ConfigError
from distill.losses import LOSSES, TopKTargets
from distill.signals import TeacherSignal
from distill.tasks.language.methods.internals import HiddenStateMatching, InternalMatching, uniform_layer_map
from distill.tasks.language.models import build_student, load_causal_lm
from distill.tasks.language.objectives import LanguageObjective, live_signal

LENGTH = 12


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return load_causal_lm(make_teacher(tmp_path_factory.mktemp("teacher")))


class Fixed(TeacherSignal):
    """A cache stand-in: the same targets for every batch."""

    def __init__(self, targets):
        self.targets = targets

    def for_batch(self, batch):
        return self.targets


def batch_of(teacher):
    torch.manual_seed(3)
    ids = torch.randint(0, teacher.config.vocab_size, (3, LENGTH))
    mask = torch.ones(3, LENGTH, dtype=torch.bool)
    mask[:, -1] = False
    mask[1, 7:] = False  # a padded row
    mask[2, :3] = False  # and a prompt that is not trained on: 11 + 7 + 8 = 26 kept positions
    return {"input_ids": ids, "row": torch.arange(3), "loss_mask": mask}


def value_and_gradients(teacher, make_objective, chunk_tokens, batch):
    torch.manual_seed(1)
    student = build_student(teacher, "tiny", LENGTH)
    assert student.get_output_embeddings().weight is student.get_input_embeddings().weight  # tied, as SmolLM2's
    objective = make_objective(student, chunk_tokens)
    torch.manual_seed(2)  # the same draws for on-policy rollouts
    value = objective(batch)["loss"]
    value.backward()
    return value.item(), {name: p.grad.clone() for name, p in student.named_parameters()}


def assert_same_as_unchunked(teacher, make_objective, chunks=(5, 1000)):
    """Chunks of 5 leave an uneven last chunk of the 26 kept positions; 1000 is one chunk longer than the batch."""
    batch = batch_of(teacher)
    value, grads = value_and_gradients(teacher, make_objective, 0, batch)
    assert value > 0
    for chunk in chunks:
        chunked, chunked_grads = value_and_gradients(teacher, make_objective, chunk, batch)
        assert chunked == pytest.approx(value, abs=1e-6, rel=1e-6), chunk
        for name, grad in grads.items():
            assert grad.abs().sum() > 0, name
            torch.testing.assert_close(chunked_grads[name], grad, atol=1e-5, rtol=1e-5, msg=f"{name}, chunk {chunk}")


@pytest.mark.parametrize("name", ["forward_kl", "jsd", "reverse_kl", "skew_kl", "skew_reverse_kl", "taid"])
def test_live_teacher_losses_are_unchanged_by_chunking(teacher, name):
    assert_same_as_unchunked(teacher, lambda student, chunk: LanguageObjective(
        student, LOSSES.build(name), live_signal(teacher), teacher, chunk_tokens=chunk))


def test_top_k_cached_loss_with_cross_entropy_is_unchanged_by_chunking(teacher):
    with torch.no_grad():
        log_p = teacher(input_ids=batch_of(teacher)["input_ids"]).logits.log_softmax(-1)
    values, indices = log_p.topk(8, dim=-1)
    signal = Fixed(TopKTargets(indices, values))
    assert_same_as_unchunked(teacher, lambda student, chunk: LanguageObjective(
        student, LOSSES.build("forward_kl", ce_weight=0.5), signal, chunk_tokens=chunk))


def test_dense_cached_logits_are_unchanged_by_chunking(teacher):
    with torch.no_grad():
        signal = Fixed(teacher(input_ids=batch_of(teacher)["input_ids"]).logits)
    assert_same_as_unchunked(teacher, lambda student, chunk: LanguageObjective(
        student, LOSSES.build("jsd", beta=0.3), signal, chunk_tokens=chunk), chunks=(5,))


def test_cross_entropy_is_unchanged_by_chunking(teacher):
    assert_same_as_unchunked(teacher, lambda student, chunk: LanguageObjective(student, chunk_tokens=chunk))


def test_on_policy_batches_and_internal_terms_are_unchanged_by_chunking(teacher):
    assert_same_as_unchunked(teacher, lambda student, chunk: LanguageObjective(
        student, LOSSES.build("jsd"), Fixed(None), teacher, on_policy=1.0, prompt_tokens=4, chunk_tokens=chunk),
        chunks=(5,))
    assert_same_as_unchunked(teacher, lambda student, chunk: LanguageObjective(
        student, LOSSES.build("forward_kl"), teacher=teacher, chunk_tokens=chunk, internals=InternalMatching(
            HiddenStateMatching(uniform_layer_map(2, 2), student.config, teacher.config, LENGTH))), chunks=(5,))


def test_without_autograd_the_chunked_loss_is_the_same_value(teacher):
    batch = batch_of(teacher)
    student = build_student(teacher, "tiny", LENGTH)
    values = []
    for chunk in (0, 5):
        with torch.no_grad():
            values.append(LanguageObjective(student, LOSSES.build("jsd"), live_signal(teacher), teacher,
                                            chunk_tokens=chunk)(batch)["loss"])
    assert not values[1].requires_grad
    torch.testing.assert_close(values[1], values[0], atol=1e-6, rtol=1e-6)


def test_chunked_loss_keeps_no_logits_of_the_batch_for_backward(teacher):
    batch = batch_of(teacher)
    vocabulary = teacher.config.vocab_size

    def rows_kept_over_the_vocabulary(chunk_tokens):
        """Positions × vocabulary tensors that autograd saved and that are still alive when backward starts, in rows
        (a chunk's own graph, freed within forward, does not count)."""
        student = build_student(teacher, "tiny", LENGTH)
        objective = LanguageObjective(student, LOSSES.build("forward_kl"), live_signal(teacher), teacher,
                                      chunk_tokens=chunk_tokens)
        saved = []

        def pack(tensor):
            if tensor.dim() and tensor.shape[-1] == vocabulary and not isinstance(tensor, torch.nn.Parameter):
                saved.append(weakref.ref(tensor))
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            value = objective(batch)["loss"]
        gc.collect()
        kept = {id(tensor): tensor.shape[:-1].numel() for tensor in (ref() for ref in saved) if tensor is not None}
        value.backward()
        return sum(kept.values())

    assert rows_kept_over_the_vocabulary(0) >= 3 * LENGTH  # the batch's logits, and the loss's copies of them
    assert rows_kept_over_the_vocabulary(5) == 0  # backward needs only the gradients taken chunk by chunk in forward


def test_each_head_runs_once_per_chunk_and_never_in_backward(teacher):
    student = build_student(teacher, "tiny", LENGTH)
    objective = LanguageObjective(student, LOSSES.build("jsd"), live_signal(teacher), teacher, chunk_tokens=5)
    calls = {"student": [], "teacher": []}
    phase = ["forward"]
    hooks = [model.get_output_embeddings().register_forward_hook(lambda *_, side=side: calls[side].append(phase[0]))
             for side, model in (("student", student), ("teacher", teacher))]
    try:
        value = objective(batch_of(teacher))["loss"]
        phase[0] = "backward"
        value.backward()
    finally:
        for hook in hooks:
            hook.remove()
    chunks = 6  # of the 26 kept positions, 5 at a time
    assert calls["student"] == ["forward"] * (chunks + 1)  # + the model's own call for its last position's logits
    assert calls["teacher"] == ["forward"] * chunks


def test_a_chunked_step_costs_no_more_matmuls_than_the_whole_batch(teacher):
    """Counted by torch's FLOP counter, whose module tracker hooks every module's inputs and outputs."""
    from torch.utils.flop_counter import FlopCounterMode

    flops = []
    for chunk in (0, 5):
        student = build_student(teacher, "tiny", LENGTH)
        objective = LanguageObjective(student, LOSSES.build("forward_kl"), live_signal(teacher), teacher,
                                      chunk_tokens=chunk)
        with FlopCounterMode(display=False) as counter:
            objective(batch_of(teacher))["loss"].backward()
        flops.append(counter.get_total_flops())
    assert 0 < flops[1] <= flops[0]  # the heads run on the 26 kept positions of 36, once each


def test_a_head_with_a_bias_and_a_loss_with_parameters_get_their_gradients(teacher):
    class ScaledKL(type(LOSSES.build("forward_kl"))):
        """Forward KL times a trained scale: a loss with a parameter of its own."""

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(1.5))

        def divergence(self, log_q, log_p):
            return self.scale * super().divergence(log_q, log_p)

    def untied_student_with_bias():
        torch.manual_seed(1)
        student = build_student(teacher, "tiny", LENGTH)
        head = torch.nn.Linear(student.config.hidden_size, student.config.vocab_size)
        student.lm_head = head
        return student

    batch = batch_of(teacher)
    results = []
    for chunk in (0, 5):
        student, loss = untied_student_with_bias(), ScaledKL()
        assert student.lm_head.weight is not student.get_input_embeddings().weight
        LanguageObjective(student, loss, live_signal(teacher), teacher, chunk_tokens=chunk)(batch)["loss"].backward()
        results.append({name: p.grad for name, p in [*student.named_parameters(), ("scale", loss.scale)]})
    whole, chunked = results
    assert whole["lm_head.bias"].abs().sum() > 0 and whole["scale"] != 0
    for name, grad in whole.items():
        torch.testing.assert_close(chunked[name], grad, atol=1e-5, rtol=1e-5, msg=name)


def test_a_model_that_changes_its_logits_after_the_head_is_refused(teacher):
    class Scaled(type(teacher)):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 2
            return out

    scaled = Scaled(teacher.config)
    with pytest.raises(ConfigError, match="changes its logits after its LM head"):
        LanguageObjective(scaled, chunk_tokens=4)
    with pytest.raises(ConfigError, match="chunk_tokens"):
        LanguageObjective(scaled, chunk_tokens=-1)
    LanguageObjective(scaled)  # unchunked, the model's own logits are used
    with pytest.raises(ConfigError, match="LM head"):
        LanguageObjective(torch.nn.Linear(2, 2), chunk_tokens=4)


def test_a_recipe_with_chunk_tokens_trains_the_same_student(tmp_path, monkeypatch):
    import distill.tasks.language.objectives as objectives
    from distill.experiment.recipe import load_recipe
    from distill.experiment.runner import Run
    from distill.tasks.language.run import EVAL_K, prepare, teacher_cache, train_student

    tree = {"name": "lm_chunked", "task": "language", "teacher": {"source": str(make_teacher(tmp_path / "teacher"))},
            "data": {"corpus": "generated", "block_length": 16, "train_blocks": 12, "eval_blocks": 4},
            "signals": {"k": 8}, "method": {"loss": "forward_kl", "ce_weight": 0.5},
            "train": {"steps": 3, "batch_size": 4, "lr": 0.01, "eval_every": 3, "progress": False}}
    context = prepare(load_recipe(tree))
    eval_cache = teacher_cache(context, "eval", EVAL_K)
    students, chunked_steps = {}, []
    whole_batch = objectives.chunked_loss
    monkeypatch.setattr(objectives, "chunked_loss", lambda *args: chunked_steps.append(args[-1]) or whole_batch(*args))
    for chunk in (0, 7):
        recipe = load_recipe(tree, [f"method.chunk_tokens={chunk}"])
        students[chunk], _ = train_student(recipe, context, Run(tmp_path / f"run{chunk}", recipe), eval_cache)
    for (name, whole), chunked in zip(students[0].state_dict().items(), students[7].state_dict().values()):
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4, msg=name)
    assert chunked_steps == [7, 7, 7]
    with pytest.raises(ConfigError, match="chunk_tokens"):
        load_recipe(tree, ["method.chunk_tokens=-1"])
