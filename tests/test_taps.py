import pickle

import pytest
import torch
from torch import nn

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


def test_hooked_model_pickles():
    net = Net()
    TapRecorder(net, [parse_tap("body.2")])
    clone = pickle.loads(pickle.dumps(net))
    assert "body.2" in module_paths(clone)
