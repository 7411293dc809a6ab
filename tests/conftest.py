"""Shared fixtures: small real data (sklearn digits), a private cache, one torch thread."""

from __future__ import annotations

import pytest
import torch

from distill.data import load_dataset


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")
