"""Shared fixtures: small real data (sklearn digits), a private cache, one torch thread."""

from __future__ import annotations

import os

import pytest
import torch

from distill.data import load_dataset


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Teachers and generated data of the tests go to temporary folders, never the user's cache."""
    previous = {key: os.environ.get(key) for key in ("DISTILL_CACHE", "DISTILL_DATA")}
    for key in previous:
        os.environ[key] = str(tmp_path_factory.mktemp(key.lower()))
    yield
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _deterministic():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")
