"""Export a trained model for deployment: TorchScript or ONNX."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.errors import DistillError


def export_model(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path,
                 fmt: str = "torchscript", input_names: list[str] | None = None,
                 output_names: list[str] | None = None) -> Path:
    """Write ``model`` (traced on ``example``, one tensor or a tuple of inputs) as TorchScript (``.pt``)
    or ONNX (``.onnx``); the batch size (dim 0 of every input) stays dynamic."""
    model = model.eval().cpu()
    inputs = example if isinstance(example, tuple) else (example,)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, inputs)
        traced.save(str(path))
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise DistillError("ONNX export needs the onnx package: pip install 'distill[onnx]'.") from None
        # A batch of 2: torch.export specialises sizes 0 and 1, which would fix the batch size.
        pairs = tuple(x[:1].expand(2, *x.shape[1:]).contiguous() for x in inputs)
        batch = torch.export.Dim("batch")
        torch.onnx.export(model, pairs, str(path), input_names=input_names or ["input"],
                          output_names=output_names or ["logits"], dynamic_shapes=tuple({0: batch} for _ in pairs),
                          dynamo=True, verbose=False)
    else:
        raise DistillError(f"unknown export format {fmt!r}; choose 'torchscript' or 'onnx'.")
    return path
