"""Shared fixtures: every test writes into its own temporary cache and results folders."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPAT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COMPAT_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("COMPAT_TINY_IMAGENET_MIRROR", raising=False)
    monkeypatch.setenv("COMPAT_TRAIN", "allow")  # CI forbids training for the book; unit tests train tiny models
