import os

import pytest

# Tests always run in the smallest profile and never touch the user's caches or results.
os.environ.setdefault("VTONLAB_PROFILE", "ci")
os.environ.setdefault("VTONLAB_PROGRESS", "0")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker: two workers with two threads each oversubscribe a 2-core machine
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty cache and data dir, so load_or_train trains and nothing shipped is found."""
    monkeypatch.setenv("VTONLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VTONLAB_DATA", str(tmp_path / "data"))
    return tmp_path
