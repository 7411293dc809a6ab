"""Export a trained student for deployment: TorchScript or ONNX."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.errors import DistillError


def export_model(model: nn.Module, example: torch.Tensor, path: Path, fmt: str = "torchscript") -> Path:
    """Write ``model`` (traced on ``example``) as TorchScript (``.pt``) or ONNX (``.onnx``); batch size stays dynamic."""
    model = model.eval().cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        traced.save(str(path))
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise DistillError("ONNX export needs the onnx package: pip install 'distill[onnx]'.") from None
        batch = torch.export.Dim("batch")
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, dynamo=True)
    else:
        raise DistillError(f"unknown export format {fmt!r}; choose 'torchscript' or 'onnx'.")
    return path
