"""Plain NumPy reference maths for the hand-computed loss tests."""

import numpy as np
import torch


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) over the last axis."""
    return (p * np.log(p / q)).sum(axis=-1)


def t(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)
