"""The README's library example runs as written."""

import re
from pathlib import Path

import torch

from distill.data import load_dataset, make_loader
from distill.models import build_model


def test_readme_library_example_runs():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    splits = load_dataset("mnist1d", transfer_size=0)
    loader = make_loader(torch.utils.data.Subset(splits.train, range(200)), batch_size=50, shuffle=True)
    namespace = {
        "torch": torch,
        "student": build_model("mlp", (1, 40), 10),
        "teacher": build_model("convnet", (1, 40), 10),
        "x_batch": next(iter(loader))[0],
        "loader": loader,
    }
    exec(compile(code, "README.md", "exec"), namespace)
    assert isinstance(namespace["deployable"], torch.nn.Module)
    assert torch.isfinite(namespace["losses"]["total"])
