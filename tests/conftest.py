"""Shared fixtures: small real data (sklearn digits), a private cache, one torch thread."""

from __future__ import annotations

import os

import pytest
import torch

from distill.data import load_dataset


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Teachers cached by tests go to a temporary folder, never the user's cache."""
    previous = os.environ.get("DISTILL_CACHE")
    os.environ["DISTILL_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("DISTILL_CACHE")
    else:
        os.environ["DISTILL_CACHE"] = previous


@pytest.fixture(autouse=True)
def _deterministic():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")
