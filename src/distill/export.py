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
        # A batch of 2: torch.export specialises sizes 0 and 1, which would fix the batch size.
        pair = example[:1].expand(2, *example.shape[1:]).contiguous()
        torch.onnx.export(model, (pair,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
    else:
        raise DistillError(f"unknown export format {fmt!r}; choose 'torchscript' or 'onnx'.")
    return path
