"""The language family: text, packing, teacher and student models, the objective, recipes and a full run."""

from __future__ import annotations

import json

import pytest
import torch
from language_fixtures import make_teacher, make_tokenizer

from distill.errors import ConfigError, DistillError
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.experiment.tasks import get_task
from distill.tasks.language.corpus import Corpus, generated_text, pack_blocks, split_documents, text_files
from distill.tasks.language.models import build_student, load_causal_lm, load_tokenizer, resolve_model_folder
from distill.tasks.language.objectives import LanguageObjective, next_token_labels, prediction_mask
from distill.tasks.language.run import prepare, teacher_cache, teacher_generations


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher"))


def recipe_for(folder, *overrides):
    tree = {"name": "lm_test", "task": "language", "teacher": {"source": str(folder)}, "student": {"preset": "tiny"},
            "data": {"corpus": "generated", "block_length": 16, "train_blocks": 24, "eval_blocks": 6},
            "signals": {"k": 8}, "train": {"steps": 6, "batch_size": 4, "lr": 0.01, "eval_every": 3, "progress": False},
            "evaluate": {"prompts": ["The king"], "sample_tokens": 5}}
    return load_recipe(tree, list(overrides))


def test_split_is_by_document_and_seeded():
    corpus = generated_text(documents=10)
    train, held = split_documents(corpus, 0.2, seed=3)
    assert len(held.texts) == 2 and len(train.texts) == 8
    assert not set(train.names) & set(held.names)
    assert split_documents(corpus, 0.2, seed=3) == (train, held)
    assert split_documents(corpus, 0.2, seed=4)[1].names != held.names
    with pytest.raises(ConfigError, match="at least 2"):
        split_documents(Corpus(["a"], ["text"]), 0.5, 0)


def test_packing_joins_documents_with_eos(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    corpus = Corpus(["a", "b"], ["the king speaks", "a fool"])
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in corpus.texts]
    stream = ids[0] + [tokenizer.eos_token_id] + ids[1] + [tokenizer.eos_token_id]
    blocks = pack_blocks(tokenizer, corpus, 3)
    assert blocks.flatten().tolist() == stream[: len(stream) // 3 * 3]
    chosen = pack_blocks(tokenizer, generated_text(), 8, max_blocks=5, seed=1)
    every = pack_blocks(tokenizer, generated_text(), 8)
    assert chosen.shape == (5, 8) and all(any(torch.equal(c, e) for e in every) for c in chosen)
    with pytest.raises(ConfigError, match="fewer than one block"):
        pack_blocks(tokenizer, corpus, 500)


def test_text_files_read_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("one document")
    (tmp_path / "b.jsonl").write_text('{"text": "two"}\n\n{"text": "three"}\n')
    corpus = text_files([str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")])
    assert corpus.texts == ["one document", "two", "three"]
    (tmp_path / "bad.jsonl").write_text('{"body": 1}\n')
    with pytest.raises(ConfigError, match="bad.jsonl:1"):
        text_files([str(tmp_path / "bad.jsonl")])
    with pytest.raises(ConfigError, match="does not exist"):
        text_files([str(tmp_path / "missing.txt")])


def test_model_folder_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        resolve_model_folder(str(tmp_path))
    with pytest.raises(ConfigError, match="GGUF file"):
        resolve_model_folder(str(tmp_path / "model.gguf"))


def test_student_from_teacher_layers_copies_them(teacher_folder):
    teacher = load_causal_lm(teacher_folder)
    student = build_student(teacher, "tiny", 16, init_layers=[1])
    assert student.config.num_hidden_layers == 1
    assert torch.equal(student.model.layers[0].mlp.up_proj.weight, teacher.model.layers[1].mlp.up_proj.weight)
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    with pytest.raises(ConfigError, match="not layers of the teacher"):
        build_student(teacher, "tiny", 16, init_layers=[5])
    small = build_student(teacher, "tiny", 16)
    assert small.config.vocab_size == teacher.config.vocab_size


def test_labels_and_masks():
    ids = torch.tensor([[5, 6, 7, 8]])
    mask = prediction_mask(ids, 1)
    assert mask.tolist() == [[False, True, True, False]]
    assert next_token_labels(ids, mask).tolist() == [[-100, 7, 8, -100]]


def test_on_policy_batches_score_only_sampled_tokens(teacher_folder):
    teacher = load_causal_lm(teacher_folder)
    student = build_student(teacher, "tiny", 16)
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, logits, targets, target=None, *, mask=None):
            seen.update(mask=mask, target=target, dense=torch.is_tensor(targets))
            return logits.sum() * 0

    torch.manual_seed(0)
    objective = LanguageObjective(student, Probe(), signal=None, teacher=teacher, on_policy=1.0, prompt_tokens=5)
    ids = torch.randint(0, teacher.config.vocab_size, (2, 12))
    fed = []
    student.register_forward_pre_hook(lambda module, args, kwargs: fed.append(kwargs.get("input_ids")), with_kwargs=True)
    out = objective({"input_ids": ids, "row": torch.arange(2)})
    assert out["on_policy"].item() == 1.0
    trained_on = fed[-1]  # the student's last pass: over its own samples, not over the batch
    assert trained_on.shape == ids.shape and torch.equal(trained_on[:, :5], ids[:, :5])
    assert not torch.equal(trained_on[:, 5:], ids[:, 5:])
    assert seen["dense"] and seen["target"] is None
    assert seen["mask"][:, :4].sum() == 0 and seen["mask"][:, 4:-1].all() and not seen["mask"][:, -1].any()


def test_recipe_refusals(teacher_folder):
    with pytest.raises(DistillError, match="not a token-level loss"):
        recipe_for(teacher_folder, "method.loss=kd")
    with pytest.raises(DistillError, match="trains without a teacher"):
        recipe_for(teacher_folder, "method.loss=ce", "method.on_policy=0.5")
    with pytest.raises(DistillError, match="shorter than data.block_length"):
        recipe_for(teacher_folder, "method.on_policy=0.5", "method.prompt_tokens=16")
    with pytest.raises(DistillError, match="beta"):
        recipe_for(teacher_folder, "method.loss=jsd", "method.options={beta: 2}")


def test_student_with_another_tokenizer_is_refused(teacher_folder, tmp_path):
    other = make_teacher(tmp_path / "other", seed=5)
    tokenizer = load_tokenizer(other)
    tokenizer.add_tokens(["zounds"])
    tokenizer.save_pretrained(other)
    with pytest.raises(ConfigError, match="another tokenizer"):
        prepare(recipe_for(teacher_folder, f"student.folder={other}"))


def test_sequence_kd_trains_on_teacher_continuations(teacher_folder):
    context = prepare(recipe_for(teacher_folder))
    data = teacher_generations(context, prompt_tokens=4, count=5, seed=0)
    assert len(data) == 5
    assert torch.equal(data.tensors["input_ids"][:, :4], context.train_blocks[:5, :4])
    assert data.tensors["loss_mask"][:, :3].sum() == 0 and data.tensors["loss_mask"][:, 3:-1].all()
    again = teacher_generations(context, prompt_tokens=4, count=5, seed=0)
    assert torch.equal(again.tensors["input_ids"], data.tensors["input_ids"])


def test_cache_is_refused_for_other_text(teacher_folder):
    context = prepare(recipe_for(teacher_folder))
    cache = teacher_cache(context, "train", 8)
    assert len(cache) == 24 and cache.k == 8
    other = prepare(recipe_for(teacher_folder, "data.seed=7"))
    from distill.signals import TopKCache
    with pytest.raises(DistillError, match="differs from the one this top-k cache was built with"):
        TopKCache(cache.folder, identity=other.identity["train"])
    for part in ("tokenizer", "text", "packing", "teacher"):
        with pytest.raises(DistillError, match=f"the {part} differs"):
            TopKCache(cache.folder, identity={**context.identity["train"], part: "changed"})
    with pytest.raises(DistillError, match="sequence packing"):
        TopKCache(cache.folder, identity=context.identity["train"], blocks=context.train_blocks.flip(0))


@pytest.mark.parametrize("overrides", [["method.loss=forward_kl"], ["method.loss=taid", "method.on_policy=0.5",
                                                                    "method.prompt_tokens=8", "signals.source=live"]])
def test_full_run_writes_a_loadable_student(teacher_folder, tmp_path, overrides):
    from transformers import AutoModelForCausalLM

    recipe = recipe_for(teacher_folder, *overrides)
    task = get_task("language")
    table = task.run(recipe, Run(tmp_path / "run", recipe))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["task"] == "language" and len(results["rows"]) == 2
    student_row = results["rows"][1]
    assert student_row["perplexity"] > 1 and 0 <= student_row["agreement"] <= 1 and student_row["kl"] >= 0
    assert (tmp_path / "run" / "perplexity.png").exists()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Samples" in report and "The king" in report
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "student")
    assert loaded.config.vocab_size == load_causal_lm(teacher_folder).config.vocab_size
    again = task.evaluate(tmp_path / "run", recipe)
    assert abs(again.rows[0]["perplexity"] - student_row["perplexity"]) < 1e-3 * student_row["perplexity"]
    assert table.rows[1]["tokens"] == 6 * 4 * 15
    text = tmp_path / "other.txt"
    text.write_text("\n".join(generated_text(documents=1, sentences=30, seed=9).texts))
    on_file = task.evaluate(tmp_path / "run", recipe, text=text)
    assert on_file.rows[0]["perplexity"] != again.rows[0]["perplexity"] and "other.txt" in on_file.title


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path(__file__).parents[1].glob("recipes/language/*.yaml")),
                         ids=lambda p: p.stem)
def test_bundled_language_recipes_load(path):
    recipe = load_recipe(path)
    assert recipe.task == "language" and recipe.teacher.source == "smollm2"


def test_a_top_k_entry_is_built_once_and_a_stale_one_is_rebuilt_not_served(teacher_folder, tmp_path, monkeypatch):
    import distill.tasks.language.run as run_module
    from distill.engine.cache import IDENTITY_FILE

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))  # not the entries of the other tests
    builds = []
    build = run_module.build_topk_cache
    monkeypatch.setattr(run_module, "build_topk_cache", lambda *a, **k: builds.append(k["k"]) or build(*a, **k))
    context = prepare(recipe_for(teacher_folder, "data.seed=11"))
    cache = run_module.teacher_cache(context, "eval", 4)
    assert run_module.teacher_cache(context, "eval", 4).folder == cache.folder and builds == [4]
    assert run_module.teacher_stats(cache)["perplexity"] > 1
    recorded = json.loads((cache.folder / IDENTITY_FILE).read_text())
    (cache.folder / IDENTITY_FILE).write_text(json.dumps({**recorded, "teacher": "another"}))  # made by another teacher
    rebuilt = run_module.teacher_cache(context, "eval", 4)
    assert builds == [4, 4] and json.loads((rebuilt.folder / IDENTITY_FILE).read_text()) == recorded
    assert run_module.teacher_cache(context, "eval", 5).folder != cache.folder and builds == [4, 4, 5]


def test_the_teacher_stays_in_eval_mode_when_the_engine_trains_the_objective():
    # a teacher with dropout gave different targets on two passes over the same ids (issue 26)
    from transformers import GPT2Config, GPT2LMHeadModel

    from distill.losses import ForwardKLLoss
    from distill.tasks.language.objectives import live_signal

    torch.manual_seed(0)
    config = dict(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    teacher = GPT2LMHeadModel(GPT2Config(**config, resid_pdrop=0.5, embd_pdrop=0.5, attn_pdrop=0.5)).requires_grad_(False)
    student = GPT2LMHeadModel(GPT2Config(**config, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    objective = LanguageObjective(student, ForwardKLLoss(), live_signal(teacher), teacher)
    objective.train()  # what engine.train does
    assert student.training and not teacher.training
    batch = {"input_ids": torch.randint(0, 50, (2, 12)), "row": torch.arange(2)}
    assert objective(batch)["loss"].item() == objective(batch)["loss"].item()


def test_rollouts_end_at_eos_and_only_sampled_tokens_up_to_it_are_trained():
    from transformers import LlamaConfig, LlamaForCausalLM

    from distill.tasks.language.objectives import continuation_mask, sample_continuations

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=6, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, max_position_embeddings=64, tie_word_embeddings=False, eos_token_id=5)
    model = LlamaForCausalLM(config).eval()
    torch.nn.init.zeros_(model.lm_head.weight)  # uniform next-token distribution: EOS is drawn 1 time in 6
    prompt = torch.zeros(8, 3, dtype=torch.long)
    ids = sample_continuations(model, prompt, 40)
    assert ids.shape == (8, 40) and torch.equal(ids[:, :3], prompt)
    mask = continuation_mask(ids, 3, 5)
    ended = 0
    for row, keep in zip(ids, mask):
        hits = (row[3:] == 5).nonzero()
        if len(hits):
            first = 3 + int(hits[0])
            ended += 1
            assert (row[first:] == 5).all()  # padded with EOS after it
            assert keep[2:first].all() and not keep[first:].any()  # predicting EOS is trained, the padding is not
        else:
            assert keep[2:-1].all() and not keep[-1]
    assert ended > 0  # generations can end
    assert continuation_mask(torch.tensor([[0, 0, 1, 5, 2, 5]]), 2, 5).tolist() == [[False, True, True, False, False, False]]


def test_recipe_refusals_of_what_the_top_k_cache_cannot_give(teacher_folder):
    with pytest.raises(DistillError, match="taid interpolates teacher and student token by token"):
        recipe_for(teacher_folder, "method.loss=taid")
    assert recipe_for(teacher_folder, "method.loss=taid", "signals.source=live").method.loss == "taid"
    with pytest.raises(DistillError, match="temperature 2.0 needs signals.source: live"):
        recipe_for(teacher_folder, "method.temperature=2.0")
    assert recipe_for(teacher_folder, "method.temperature=2.0", "signals.source=live").method.temperature == 2.0
    with pytest.raises(DistillError, match="teacher_placement 'cache' leaves no teacher in training"):
        recipe_for(teacher_folder, "train.teacher_placement=cache", "signals.source=live")
    assert recipe_for(teacher_folder, "train.teacher_placement=cache").signals.source == "cache"
    with pytest.raises(DistillError, match="chunk_tokens applies the live teacher's LM head outside its forward"):
        recipe_for(teacher_folder, "train.teacher_placement=shard", "signals.source=live", "method.chunk_tokens=4")
    assert recipe_for(teacher_folder, "train.teacher_placement=shard", "method.chunk_tokens=4").method.chunk_tokens == 4
