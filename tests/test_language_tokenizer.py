"""A student with its own tokenizer: ULD and MinED on tiny models, the alignment of two tokenizations by
character offsets, bits per character, a student vocabulary padded beyond the teacher's, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch
from language_fixtures import make_teacher

from distill.errors import ConfigError, DistillError
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.experiment.tasks import get_task
from distill.losses import LOSSES
from distill.losses.uld import sorted_wasserstein
from distill.tasks.language.corpus import Corpus, generated_text, pack_text
from distill.tasks.language.methods.alignment import aligned_positions
from distill.tasks.language.methods.cross_tokenizer import CrossTokenizerObjective
from distill.tasks.language.methods.vocabulary import edit_distances, nearest_by_edit_distance, token_strings
from distill.tasks.language.metrics import evaluate_model
from distill.tasks.language.models import load_causal_lm, load_tokenizer
from distill.tasks.language.run import cross_tokenizer_loss, make_student, prepare

OWN = ["student.tokenizer={train: {vocab_size: 300}}", "signals.source=live", "method.ce_weight=1.0"]


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher"))


def recipe_for(folder, *overrides):
    tree = {"name": "xtok", "task": "language", "teacher": {"source": str(folder)}, "student": {"preset": "tiny"},
            "data": {"corpus": "generated", "block_length": 24, "train_blocks": 16, "eval_blocks": 4},
            "signals": {"k": 8}, "train": {"steps": 4, "batch_size": 4, "lr": 0.01, "eval_every": 2, "progress": False},
            "evaluate": {"prompts": ["The king"], "sample_tokens": 4}}
    return load_recipe(tree, list(overrides))


def test_uld_is_the_sorted_l1_of_the_paper_by_hand():
    student = torch.tensor([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]]).log().requires_grad_()
    teacher = torch.tensor([[0.1, 0.6, 0.05, 0.25], [0.7, 0.1, 0.1, 0.1]]).log()
    # sorted and padded: [.5 .3 .2 0] against [.6 .25 .1 .05]; [1/3 1/3 1/3 0] against [.7 .1 .1 .1]
    first, second = 0.1 + 0.05 + 0.1 + 0.05, (0.7 - 1 / 3) + 2 * (1 / 3 - 0.1) + 0.1
    loss = LOSSES.build("uld")(student, teacher)
    assert loss.item() == pytest.approx((first + second) / 2, abs=1e-6)
    assert LOSSES.build("uld")(student, teacher, mask=torch.tensor([True, False])).item() == pytest.approx(first, abs=1e-6)
    loss.backward()
    assert student.grad.abs().sum() > 0


def test_sorted_wasserstein_is_zero_for_one_distribution_and_blind_to_token_order():
    p = torch.softmax(torch.randn(5, 40), dim=-1)
    assert torch.equal(sorted_wasserstein(p, p), torch.zeros(5))
    shuffled = p[:, torch.randperm(40)]
    assert torch.allclose(sorted_wasserstein(shuffled, p), torch.zeros(5))
    padded = torch.cat([shuffled, torch.zeros(5, 9)], dim=-1)  # more tokens holding nothing: the same distribution
    assert torch.allclose(sorted_wasserstein(padded, p), torch.zeros(5))
    other = torch.softmax(torch.randn(5, 30), dim=-1)
    assert torch.allclose(sorted_wasserstein(p, other), sorted_wasserstein(other[:, torch.randperm(30)], shuffled))
    assert (sorted_wasserstein(p, other) > 0).all()


def test_mined_loss_is_forward_kl_to_the_mapped_teacher_by_hand():
    student = torch.tensor([[0.5, 0.3, 0.2]]).log()
    teacher = torch.tensor([[0.1, 0.6, 0.05, 0.25]]).log()
    loss = LOSSES.build("mined", vocabulary_map=torch.tensor([2, 0, 0, 1]))  # mapped teacher: [.65 .25 .1]
    expected = 0.65 * math.log(0.65 / 0.5) + 0.25 * math.log(0.25 / 0.3) + 0.1 * math.log(0.1 / 0.2)
    assert loss(student, teacher).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(DistillError, match="vocabulary_map"):
        LOSSES.build("mined")(student, teacher)


def test_positions_that_read_the_same_text_are_aligned():
    # "ab cd": student a|b| c|d, teacher ab| cd — only the contexts "ab" coincide (student 1, teacher 0)
    student = torch.tensor([[0, 1], [1, 2], [2, 4], [4, 5]])
    teacher = torch.tensor([[0, 2], [2, 5]])
    assert aligned_positions(student, teacher).tolist() == [-1, 0, -1, -1]
    # "xéyz": the student splits é into two byte tokens that both carry its offsets; only the second ends it
    student = torch.tensor([[0, 1], [1, 2], [1, 2], [2, 3], [3, 4]])
    teacher = torch.tensor([[0, 2], [2, 4]])
    assert aligned_positions(student, teacher).tolist() == [-1, -1, 0, -1, -1]


def test_the_teachers_views_hold_the_same_text_and_aligned_prefixes_are_equal(teacher_folder):
    context = prepare(recipe_for(teacher_folder, *OWN, "method.loss=uld"))
    student, teacher = context.own_tokenizer, context.tokenizer
    assert len(student) != len(teacher) and len(student) <= 300
    views = context.views["train"]
    pairs = 0
    for block, ids, length, aligned in zip(context.train_blocks, views.ids, views.lengths, views.aligned):
        assert student.decode(block) == teacher.decode(ids[:length])
        assert (ids[length:] == teacher.eos_token_id).all()
        for j, i in enumerate(aligned.tolist()):
            if i >= 0:
                assert student.decode(block[: j + 1]) == teacher.decode(ids[: i + 1])
                pairs += 1
    assert pairs > 0.3 * context.train_blocks[:, :-1].numel()  # word boundaries are shared


def test_edit_distances_match_the_textbook_recursion_and_mined_maps_exact_tokens_to_themselves(teacher_folder):
    def levenshtein(a: str, b: str) -> int:
        row = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            row, last = [i], row
            for j, y in enumerate(b, 1):
                row.append(min(last[j] + 1, row[j - 1] + 1, last[j - 1] + (x != y)))
        return row[-1]

    rng = torch.Generator().manual_seed(0)
    words = ["".join("abcé "[int(c)] for c in torch.randint(0, 5, (int(n),), generator=rng))
             for n in torch.randint(0, 14, (60,), generator=rng)]
    for queries in (words[:30], words[:30] + ["y" * 20], words[:30] + ["x" * 40]):  # 16-, 32- and 64-bit vectors
        assert edit_distances(queries, words[30:]).tolist() == [[levenshtein(q, c) for c in words[30:]] for q in queries]
    assert nearest_by_edit_distance(["kin", "queen", "zz"], ["king", "kind", "quern", "a"]).tolist() == [0, 2, 3]
    teacher = load_tokenizer(teacher_folder)
    strings = token_strings(teacher, len(teacher))
    assert nearest_by_edit_distance(strings, strings).tolist() == list(range(len(teacher)))


def test_bits_per_character_of_a_uniform_model_by_hand(teacher_folder):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(teacher_folder)
    corpus = Corpus(["a", "b"], ["the king speaks of the crown", "a fool doth love the night"])
    packed = pack_text(tokenizer, corpus, 6)
    first = [tokenizer.decode(block[:1]) for block in packed.blocks]
    joined = "".join(corpus.texts[0] + "\0" + corpus.texts[1] + "\0")  # the end-of-text token covers one character
    assert packed.characters().tolist() == [len(tokenizer.decode(block).replace("<|endoftext|>", "\0")) - len(f)
                                            for block, f in zip(packed.blocks, first)]
    assert int(packed.offsets[-1, -1, 1]) <= len(joined)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    torch.nn.init.zeros_(model.lm_head.weight)  # every next token has probability 1 / V
    scores = evaluate_model(model, packed.blocks, characters=packed.characters())
    predicted = packed.blocks[:, 1:].numel()
    assert scores["perplexity"] == pytest.approx(len(tokenizer), rel=1e-5)
    assert scores["bits_per_char"] == pytest.approx(predicted * math.log2(len(tokenizer)) / float(packed.characters().sum()),
                                                    rel=1e-5)


@pytest.mark.parametrize("loss", ["uld", "mined"])
def test_a_few_steps_lower_the_cross_tokenizer_loss(teacher_folder, loss):
    recipe = recipe_for(teacher_folder, *OWN, f"method.loss={loss}")
    context = prepare(recipe)
    student = make_student(recipe, context)
    assert student.config.vocab_size == len(context.own_tokenizer)
    objective = CrossTokenizerObjective(student, cross_tokenizer_loss(recipe, context), context.teacher, ce_weight=0.0)
    views = context.views["train"]
    batch = {"input_ids": context.train_blocks[:4], "teacher_ids": views.ids[:4], "aligned": views.aligned[:4]}
    optimizer = torch.optim.Adam(student.parameters(), lr=0.01)
    losses = []
    for _ in range(12):
        out = objective(batch)
        losses.append(out["loss"].item())
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    assert out["aligned"] > 0.3 and losses[-1] < 0.8 * losses[0]


def test_a_run_with_its_own_tokenizer_writes_a_student_transformers_loads(teacher_folder, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = recipe_for(teacher_folder, *OWN, "method.loss=uld")
    task = get_task("language")
    table = task.run(recipe, Run(tmp_path / "run", recipe))
    teacher, student = table.rows
    assert "own" in student["model"] and student["bits_per_char"] > 0 and teacher["bits_per_char"] > 0
    assert "agreement" not in student and "bits per character compare them" in " ".join(table.notes)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "student")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "student")
    assert len(tokenizer) == model.config.vocab_size <= 300 and tokenizer.eos_token == "<|endoftext|>"
    again = task.evaluate(tmp_path / "run", recipe)
    assert again.rows[0]["bits_per_char"] == pytest.approx(student["bits_per_char"], rel=1e-4)
    text = tmp_path / "other.txt"
    text.write_text("\n".join(generated_text(documents=1, sentences=30, seed=9).texts))
    on_file = task.evaluate(tmp_path / "run", recipe, text=text)
    assert on_file.rows[0]["bits_per_char"] != again.rows[0]["bits_per_char"] and on_file.rows[1]["bits_per_char"] > 0
    with pytest.raises(ConfigError, match="not the one this run's student reads"):
        task.evaluate(tmp_path / "run", recipe, weights=teacher_folder)


def _student_folder(folder, teacher_folder, vocab_size):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(teacher_folder)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=32, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_padded_student_vocabulary_is_cut_to_the_teachers_ids(teacher_folder, tmp_path):
    from distill.losses import ForwardKLLoss
    from distill.tasks.language.objectives import LanguageObjective, live_signal

    size = load_causal_lm(teacher_folder).config.vocab_size
    folder = _student_folder(tmp_path / "padded", teacher_folder, size + 8)  # 8 rows of padding, same tokenizer
    recipe = recipe_for(teacher_folder, f"student.folder={folder}", "signals.source=live")
    context = prepare(recipe)
    student = make_student(recipe, context)
    ids = context.train_blocks[:2]
    assert student(input_ids=ids).logits.shape[-1] == size
    objective = LanguageObjective(student, ForwardKLLoss(), live_signal(context.teacher), context.teacher)
    loss = objective({"input_ids": ids, "row": torch.arange(2)})["loss"]
    raw = load_causal_lm(folder)(input_ids=ids).logits  # every row, as saved
    assert raw.shape[-1] == size + 8
    expected = ForwardKLLoss()(raw[..., :size], context.teacher(input_ids=ids).logits,
                               mask=torch.ones(ids.shape, dtype=torch.bool).index_fill_(1, torch.tensor([ids.shape[1] - 1]), False))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_padded_teacher_vocabulary_is_cut_to_the_students_ids(teacher_folder, tmp_path):
    size = load_causal_lm(teacher_folder).config.vocab_size
    padded_teacher = tmp_path / "teacher"
    _student_folder(padded_teacher, teacher_folder, size + 8)  # the same tokenizer, 8 rows of padding
    folder = _student_folder(tmp_path / "student", teacher_folder, size)
    recipe = recipe_for(padded_teacher, f"student.folder={folder}", "train.steps=2")
    table = get_task("language").run(recipe, Run(tmp_path / "run", recipe))
    assert math.isfinite(table.rows[1]["kl"]) and table.rows[0]["bits_per_char"] > 0
    small = _student_folder(tmp_path / "small", teacher_folder, size - 4)
    with pytest.raises(ConfigError, match="a row per token"):
        prepare(recipe_for(teacher_folder, f"student.folder={small}"))


def test_cross_tokenizer_configurations_that_make_no_sense_are_refused(teacher_folder, tmp_path):
    with pytest.raises(DistillError, match="the student shares the teacher's"):
        recipe_for(teacher_folder, "method.loss=uld", "signals.source=live")
    with pytest.raises(DistillError, match=r"does not exist"):
        recipe_for(teacher_folder, "student.tokenizer={file: missing/tokenizer.json}", "method.loss=uld",
                   "signals.source=live")
    (tmp_path / "broken.json").write_text("{not a tokenizer")
    with pytest.raises(DistillError, match="is not a tokenizer.json"):
        recipe_for(teacher_folder, f"student.tokenizer={{file: {tmp_path / 'broken.json'}}}", "method.loss=uld",
                   "signals.source=live")
    with pytest.raises(DistillError, match="use a cross-tokenizer loss"):
        recipe_for(teacher_folder, "student.tokenizer={train: {vocab_size: 300}}")
    with pytest.raises(DistillError, match="set signals.source: live"):
        recipe_for(teacher_folder, "student.tokenizer={train: {vocab_size: 300}}", "method.loss=uld")
    with pytest.raises(DistillError, match="init_layers / prune copy the teacher's embeddings"):
        recipe_for(teacher_folder, *OWN, "method.loss=uld", "student.init_layers=[0]")
    with pytest.raises(DistillError, match="chunk_tokens is not implemented"):
        recipe_for(teacher_folder, *OWN, "method.loss=uld", "method.chunk_tokens=64")
    with pytest.raises(DistillError, match="at least 258"):
        recipe_for(teacher_folder, "student.tokenizer={train: {vocab_size: 100}}", "method.loss=ce")
    same = _student_folder(tmp_path / "same", teacher_folder, load_causal_lm(teacher_folder).config.vocab_size)
    with pytest.raises(ConfigError, match="shares the teacher's"):
        prepare(recipe_for(teacher_folder, f"student.folder={same}", "method.loss=uld", "signals.source=live"))
    own = tmp_path / "own_file"
    load_tokenizer(make_teacher(tmp_path / "other", seed=3)).save_pretrained(own)
    file_recipe = recipe_for(teacher_folder, f"student.tokenizer={{file: {own / 'tokenizer.json'}, eos: '<|endoftext|>'}}",
                             "method.loss=ce")
    assert prepare(file_recipe).own_tokenizer.eos_token == "<|endoftext|>"
