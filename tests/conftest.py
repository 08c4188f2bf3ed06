"""Shared fixtures: a tiny synthetic scene (no files) and the path of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_scene():
    """8 + 2 views at 24x24 of the built-in analytic object, normalised."""
    from lumisurf.data.normalization import normalize_scene
    from lumisurf.data.synthetic import make_synthetic_scene

    return normalize_scene(make_synthetic_scene(n_train=8, n_test=2, resolution=24))


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared dataset {path} is absent")
    return path
