import copy
import pickle

import pytest
import torch
from torch import nn

from distill import Distiller
from distill.errors import DistillError
from distill.taps import TapRecorder, TapSpec, module_paths, parse_tap


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)
        self.rnn = nn.GRU(8, 8, batch_first=True)

    def forward(self, x):
        h = self.body(x)
        out, _ = self.rnn(h.unsqueeze(1))
        return self.head(out[:, 0])


def test_parse_forms():
    assert parse_tap("body.0") == TapSpec("body.0", "output", None)
    assert parse_tap("body.0:input") == TapSpec("body.0", "input", None)
    assert parse_tap("rnn:output[0]") == TapSpec("rnn", "output", 0)
    assert parse_tap("output") == TapSpec("", "output", None)
    assert parse_tap("input") == TapSpec("", "input", None)
    with pytest.raises(DistillError, match="cannot parse tap"):
        parse_tap("body.0:middle")


def test_recorder_captures_the_right_tensors():
    net = Net()
    specs = [parse_tap(s) for s in ("body.0", "head:input", "output", "input", "rnn[0]")]
    recorder = TapRecorder(net, specs)
    x = torch.randn(5, 4)
    y = net(x)
    assert torch.equal(recorder.get(specs[0]), net.body[0](x))
    assert recorder.get(specs[1]).shape == (5, 8)
    assert torch.equal(recorder.get(specs[2]), y)
    assert torch.equal(recorder.get(specs[3]), x)
    assert recorder.get(specs[4]).shape == (5, 1, 8)
    recorder.remove()
    net(x)
    assert recorder.store == {}


def test_wrong_path_suggests_nearest():
    with pytest.raises(DistillError) as err:
        TapRecorder(Net(), [parse_tap("bdy.0")], role="student")
    message = str(err.value)
    assert "student" in message and "'body.0'" in message


def test_tuple_output_needs_index():
    net = Net()
    spec = parse_tap("rnn")
    recorder = TapRecorder(net, [spec])
    net(torch.randn(2, 4))
    with pytest.raises(DistillError, match=r"rnn\[0\]"):
        recorder.get(spec)


def test_nothing_captured_is_explained():
    spec = parse_tap("head")
    recorder = TapRecorder(Net(), [spec])
    with pytest.raises(DistillError, match="captured nothing"):
        recorder.get(spec)


ROUND_TRIPS = {"pickle": lambda obj: pickle.loads(pickle.dumps(obj)), "deepcopy": copy.deepcopy}
COPIES = [
    pytest.param("pickle", False, id="pickle-fresh"),
    pytest.param("deepcopy", False, id="deepcopy-fresh"),
    pytest.param("pickle", True, id="pickle-after-step"),
    pytest.param("deepcopy", True, id="deepcopy-after-step"),  # failed before: the store held a graph
]


@pytest.mark.parametrize("how, after_step", COPIES)
def test_hooked_model_still_records_after_a_copy(how, after_step):
    """A model and its recorder copied together (as DDP and spawn do) record the copy's own tensors."""
    net = Net()
    specs = [parse_tap(s) for s in ("body.0", "head:input", "output", "rnn[0]")]
    recorder = TapRecorder(net, specs)
    if after_step:
        net(torch.randn(2, 4)).sum().backward()
    clone, clone_recorder = ROUND_TRIPS[how]((net, recorder))
    assert "body.2" in module_paths(clone)
    with torch.no_grad():  # the copy's weights now differ from the original's: its own tensors must be recorded
        for p in clone.parameters():
            p.add_(1.0)
    recorder.clear()
    x = torch.randn(5, 4)
    y = clone(x)
    assert recorder.store == {}  # the original's recorder saw nothing of the copy's pass
    with torch.no_grad():
        rnn_out = clone.rnn(clone.body(x).unsqueeze(1))[0]
    assert torch.equal(clone_recorder.get(specs[0]), clone.body[0](x))
    assert torch.equal(clone_recorder.get(specs[1]), rnn_out[:, 0])
    assert torch.equal(clone_recorder.get(specs[2]), y)
    assert torch.equal(clone_recorder.get(specs[3]), rnn_out)
    assert not torch.equal(clone_recorder.get(specs[0]), net.body[0](x))
    clone_recorder.remove()
    clone(x)
    assert clone_recorder.store == {} and _hook_count(clone) == 0 and _hook_count(net) == 4


@pytest.mark.parametrize("how, after_step", COPIES)
def test_copied_distiller_records_and_scores_like_the_original(how, after_step):
    torch.manual_seed(0)
    student, teacher = Net(), Net()
    pairs = {("output", "output"): "kd", ("body.0", "head:input"): ("sp", 2.0), ("body.2", "body.2"): "fitnet"}
    distiller = Distiller(student, teacher, pairs, example_input=torch.randn(2, 4))
    if after_step:  # one step of an ordinary training loop
        distiller(torch.randn(3, 4))
        distiller.compute_losses()["total"].backward()
    clone = ROUND_TRIPS[how](distiller)
    x = torch.randn(6, 4)
    out, clone_out = distiller(x), clone(x)
    assert torch.equal(clone_out, out)
    losses, clone_losses = distiller.compute_losses(), clone.compute_losses()
    assert clone_losses.keys() == losses.keys() == {"kd", "sp", "fitnet", "total"}
    for name in losses:
        assert torch.equal(clone_losses[name], losses[name]), name
    assert torch.equal(clone.passes, distiller.passes)
    # after the copy's weights change, its recorders hold the copy's tensors, the original's recorders nothing
    with torch.no_grad():
        for p in clone.student.parameters():
            p.mul_(0.5)
    distiller.student_taps.clear()
    clone(x)
    assert distiller.student_taps.store == {}
    with torch.no_grad():
        assert torch.equal(clone.student_taps.get(parse_tap("body.0")), clone.student.body[0](x))
        assert torch.equal(clone.student_taps.get(parse_tap("output")), clone.student(x))
        head_input = teacher.rnn(teacher.body(x).unsqueeze(1))[0][:, 0]  # the copied teacher is unchanged
        assert torch.equal(clone.teacher_taps.get(parse_tap("head:input")), head_input)
    assert not torch.equal(clone.compute_losses()["total"], losses["total"])
    assert clone.export() is clone.student and _hook_count(clone.student) == 0 and _hook_count(student) > 0


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 8)

    def forward(self, x):
        h = self.proj(x)
        return {"last_hidden_state": h, "hidden": h.relu()}


class ModelOutput(dict):
    """Stands in for Hugging Face's ModelOutput (an OrderedDict subclass with attribute access)."""

    __getattr__ = dict.__getitem__


class DictNet(nn.Module):
    def __init__(self, wrap=dict):
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Linear(8, 3)
        self.wrap = wrap

    def forward(self, x):
        h = self.encoder(x)["hidden"]
        return self.wrap(logits=self.head(h), features=h)


def test_parse_dict_keys():
    assert parse_tap("output[logits]") == TapSpec("", "output", "logits")
    assert parse_tap("encoder[last_hidden_state]") == TapSpec("encoder", "output", "last_hidden_state")
    assert parse_tap("encoder:output[hidden]") == TapSpec("encoder", "output", "hidden")
    for text in ("output[logits]", "encoder[hidden]", "encoder:input", "rnn[0]"):
        assert str(parse_tap(text)) == text and parse_tap(str(parse_tap(text))) == parse_tap(text)


@pytest.mark.parametrize("wrap", [dict, ModelOutput])
def test_dict_outputs_are_tapped_by_key(wrap):
    net = DictNet(wrap)
    specs = [parse_tap(s) for s in ("output[logits]", "encoder[last_hidden_state]", "encoder:output[hidden]")]
    recorder = TapRecorder(net, specs)
    x = torch.randn(5, 4)
    out = net(x)
    assert torch.equal(recorder.get(specs[0]), out["logits"])
    assert torch.equal(recorder.get(specs[1]), net.encoder.proj(x))
    assert torch.equal(recorder.get(specs[2]), net.encoder.proj(x).relu())


def _captured_error(net, tap):
    spec = parse_tap(tap)
    recorder = TapRecorder(net, [spec])
    net(torch.randn(2, 4))
    with pytest.raises(DistillError) as err:
        recorder.get(spec)
    return str(err.value)


def test_dict_output_without_key_lists_the_keys():
    message = _captured_error(DictNet(), "output")
    assert "'logits'" in message and "'features'" in message and "output[logits]" in message
    assert "[0]" not in message
    message = _captured_error(DictNet(), "encoder")
    assert "'last_hidden_state'" in message and "encoder[last_hidden_state]" in message


@pytest.mark.parametrize("tap", ["output[0]", "output[logit]"])
def test_missing_key_lists_the_keys(tap):
    message = _captured_error(DictNet(), tap)
    assert "'logits'" in message and "'features'" in message


@pytest.mark.parametrize("tap", ["rnn[2]", "rnn[hidden]"])
def test_bad_tuple_index_says_how_many_elements(tap):
    message = _captured_error(Net(), tap)
    assert "2 elements" in message and "rnn[0]" in message


def test_a_tensor_cannot_be_indexed():
    message = _captured_error(Net(), "head[0]")
    assert "tensor" in message and "'head'" in message


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_recorder_removes_its_hooks_when_a_later_tap_is_wrong():
    net = Net()
    with pytest.raises(DistillError, match="'body.0'"):
        TapRecorder(net, [parse_tap("head"), parse_tap("body.0:input"), parse_tap("bdy.0")])
    assert _hook_count(net) == 0
    net(torch.randn(2, 4))


class Blocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Module()
        self.enc.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        self.enc.parts = nn.ModuleDict({"a": nn.Linear(4, 4)})
        self.seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def forward(self, x):
        for block in self.enc.blocks:
            x = block(x)
        return self.seq(self.enc.parts["a"](x))


@pytest.mark.parametrize("tap, path", [("enc.blocks[1]", "enc.blocks.1"), ("enc.parts[a]", "enc.parts.a"),
                                       ("enc.blocks", "enc.blocks.0")])
def test_index_notation_on_a_container_suggests_the_module_path(tap, path):
    net = Blocks()
    with pytest.raises(DistillError) as err:
        TapRecorder(net, [parse_tap(tap)], "student")
    assert repr(path) in str(err.value) and "never runs" in str(err.value)
    assert _hook_count(net) == 0


def test_index_notation_on_a_sequential_suggests_the_module_path():
    message = _captured_error(Blocks(), "seq[0]")
    assert "'seq.0'" in message and "'seq'" in message
