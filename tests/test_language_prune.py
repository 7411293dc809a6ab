"""Students cut from the teacher: depth (every other, first + last, block influence) and width (Minitron)
pruning of a tiny Llama built here, loadable by transformers, exact where nothing is cut."""

from __future__ import annotations

import json

import pytest
import torch
from language_fixtures import make_teacher

from distill.cli import _registries
from distill.errors import ConfigError
from distill.experiment.recipe import load_recipe
from distill.tasks.language.methods.prune import PRUNERS, cut, measure
from distill.tasks.language.run import make_student, prepare

LAYERS, HEADS, KV_HEADS, MLP, HEAD_DIM = 6, 4, 2, 64, 8


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=KV_HEADS, intermediate_size=MLP, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def calibration(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 100, (8, 24), generator=torch.Generator().manual_seed(seed))


def reloaded(model, folder):
    from transformers import AutoModelForCausalLM

    model.save_pretrained(folder, safe_serialization=True)
    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()


@pytest.mark.parametrize("method", PRUNERS.names())
def test_each_method_writes_a_student_transformers_loads(method, tmp_path):
    teacher, ids = tiny_llama(), calibration()
    student = cut(teacher, ids, layers=3, method=method, intermediate=24, heads=2)
    loaded = reloaded(student, tmp_path)
    config = loaded.config
    assert (config.num_hidden_layers, config.intermediate_size, config.num_attention_heads,
            config.num_key_value_heads, config.head_dim) == (3, 24, 2, KV_HEADS, HEAD_DIM)
    logits = loaded(input_ids=ids).logits
    assert logits.shape == (*ids.shape, 100) and torch.isfinite(logits).all()
    assert torch.equal(logits, student.eval()(input_ids=ids).logits)


def test_every_other_and_first_last_keep_those_layers():
    teacher, ids = tiny_llama(), calibration()
    for method, kept in (("every_other", [0, 2, 4]), ("first_last", [0, 1, 5])):
        student = cut(teacher, ids, layers=3, method=method)
        for new, old in enumerate(kept):
            assert torch.equal(student.model.layers[new].self_attn.q_proj.weight,
                               teacher.model.layers[old].self_attn.q_proj.weight)
            assert torch.equal(student.model.layers[new].mlp.down_proj.weight, teacher.model.layers[old].mlp.down_proj.weight)


def test_keeping_everything_reproduces_the_teacher_exactly():
    teacher, ids = tiny_llama(), calibration()
    for method in PRUNERS.names():
        student = cut(teacher, ids, layers=LAYERS, method=method, intermediate=MLP, heads=HEADS).eval()
        assert torch.equal(student(input_ids=ids).logits, teacher(input_ids=ids).logits)


def test_block_influence_drops_the_layer_that_changes_nothing():
    teacher, ids = tiny_llama(), calibration()
    identity = teacher.model.layers[3]  # no attention or MLP output: h_out = h_in
    with torch.no_grad():
        identity.self_attn.o_proj.weight.zero_()
        identity.mlp.down_proj.weight.zero_()
    influence = measure(teacher, ids).influence
    assert influence[3] == pytest.approx(0, abs=1e-9) and min(influence[:3] + influence[4:]) > 1e-3
    student = cut(teacher, ids, layers=5, method="block_influence").eval()
    assert torch.equal(student.model.layers[3].self_attn.q_proj.weight, teacher.model.layers[4].self_attn.q_proj.weight)
    # the dropped layer was the identity, so the cut computes exactly what the teacher computes
    torch.testing.assert_close(student(input_ids=ids).logits, teacher(input_ids=ids).logits)


def test_width_pruning_keeps_the_live_channels_and_heads():
    teacher, ids = tiny_llama(), calibration()
    dead_channels = torch.arange(0, MLP, 2)  # up_proj rows of zero: act(gate) · up = 0
    live_heads, dead_heads = [0, 3], [1, 2]  # one of each in both key/value groups (heads 0-1 and 2-3)
    with torch.no_grad():
        for layer in teacher.model.layers:
            layer.mlp.up_proj.weight[dead_channels] = 0
            q = layer.self_attn.q_proj.weight.view(HEADS, HEAD_DIM, -1)
            q[dead_heads] = 0  # uniform attention: the mean of the values, a smaller output than a sharp head's
            q[live_heads] *= 30
    student = cut(teacher, ids, intermediate=MLP // 2, heads=2).eval()
    rows = torch.cat([torch.arange(h * HEAD_DIM, (h + 1) * HEAD_DIM) for h in live_heads])
    for new, old in zip(student.model.layers, teacher.model.layers, strict=True):
        assert torch.equal(new.mlp.up_proj.weight, old.mlp.up_proj.weight[1::2])
        assert torch.equal(new.mlp.down_proj.weight, old.mlp.down_proj.weight[:, 1::2])
        assert torch.equal(new.self_attn.q_proj.weight, old.self_attn.q_proj.weight[rows])
        assert torch.equal(new.self_attn.o_proj.weight, old.self_attn.o_proj.weight[:, rows])
        assert torch.equal(new.self_attn.k_proj.weight, old.self_attn.k_proj.weight)
    # the cut computes what the teacher computes with the pruned heads' contributions removed
    with torch.no_grad():
        for layer in teacher.model.layers:
            layer.self_attn.o_proj.weight.view(-1, HEADS, HEAD_DIM)[:, dead_heads] = 0
    torch.testing.assert_close(student(input_ids=ids).logits, teacher(input_ids=ids).logits)


def test_layer_types_and_biases_follow_the_cut(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, max_position_embeddings=64, use_sliding_window=True, sliding_window=8,
                         max_window_layers=2)
    teacher, ids = Qwen2ForCausalLM(config).eval(), calibration()
    assert teacher.config.layer_types[1] != teacher.config.layer_types[2]
    same = cut(teacher, ids, layers=4, intermediate=64, heads=4).eval()
    assert torch.equal(same(input_ids=ids).logits, teacher(input_ids=ids).logits)
    student = reloaded(cut(teacher, ids, layers=2, method="every_other", heads=2), tmp_path)
    assert student.config.layer_types == [teacher.config.layer_types[0], teacher.config.layer_types[2]]
    assert student.model.layers[1].self_attn.q_proj.bias.shape == (2 * HEAD_DIM,)


@pytest.mark.parametrize(("cut_", "message"), [({"layers": 7}, "between 1 and the teacher's 6 layers"),
                                               ({"intermediate": 65}, "intermediate_size 64"),
                                               ({"heads": 3}, "multiple of the teacher's 2 key/value heads"),
                                               ({"layers": 4, "method": "every_other"}, "at most 3")])
def test_a_cut_the_teacher_cannot_give_is_refused(cut_, message):
    with pytest.raises(ConfigError, match=message):
        cut(tiny_llama(), calibration(), **cut_)


def test_recipes_name_a_cut_and_distill_lists_the_methods(tmp_path):
    assert _registries()["language-pruners"] is PRUNERS
    folder = make_teacher(tmp_path / "teacher")
    tree = {"name": "cut", "task": "language", "teacher": {"source": str(folder)},
            "student": {"prune": {"layers": 1, "method": "first_last", "intermediate": 16, "tokens": 40}},
            "data": {"corpus": "generated", "block_length": 16, "train_blocks": 24, "eval_blocks": 6}}
    recipe = load_recipe(tree)
    student = make_student(recipe, prepare(recipe))
    assert student.config.num_hidden_layers == 1 and student.config.intermediate_size == 16
    assert all(p.requires_grad for p in student.parameters())
    for bad, message in ((["student.prune.method=deepest"], "unknown; use one of"),
                         (["student.prune.layers=0"], "greater than 0"),
                         (["student.init_layers=[0]"], "give one of folder")):
        with pytest.raises(ConfigError, match=message):
            load_recipe(tree, bad)


def test_a_cut_student_trains_with_taid_and_its_folder_loads_generates_and_evaluates_on_a_text(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.cli import main
    from distill.tasks.language.corpus import generated_text

    folder = make_teacher(tmp_path / "teacher")
    recipe = tmp_path / "cut.yaml"
    recipe.write_text(f"""name: cut
task: language
teacher: {{source: {folder}}}
student: {{prune: {{layers: 1, method: block_influence, intermediate: 16, tokens: 40}}}}
data: {{corpus: generated, block_length: 16, train_blocks: 24, eval_blocks: 4}}
signals: {{source: live}}
method: {{loss: taid}}
train: {{steps: 3, batch_size: 4, eval_every: 3}}
evaluate: {{sample_tokens: 4}}
""")
    run = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(run), "--no-progress"]) == 0
    rows = json.loads((run / "results.json").read_text())["rows"]
    assert rows[1]["model"] == "student (taid)" and rows[1]["tokens"] == 3 * 4 * 15
    student = AutoModelForCausalLM.from_pretrained(run / "student", local_files_only=True).eval()
    assert (student.config.num_hidden_layers, student.config.intermediate_size) == (1, 16)
    tokenizer = AutoTokenizer.from_pretrained(run / "student", local_files_only=True)
    ids = tokenizer("The king", return_tensors="pt")["input_ids"]
    generated = student.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
    assert generated.shape == (1, ids.shape[1] + 3)
    text = tmp_path / "other.txt"
    text.write_text("\n".join(generated_text(documents=1, sentences=30, seed=9).texts))
    capsys.readouterr()
    assert main(["eval", str(run), "--text", str(text)]) == 0
    saved = json.loads((run / "eval_other.json").read_text())
    assert [row["parameters"] for row in saved["rows"]] == [rows[1]["parameters"], rows[0]["parameters"]]
    assert 1 < saved["rows"][0]["perplexity"] != rows[1]["perplexity"]
