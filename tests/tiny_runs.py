"""A tiny finished Stage I run of the built-in scene (2 steps, mesh extracted): the starting point of the
Stage II, material-init and relighting-viewer tests."""

from __future__ import annotations

from pathlib import Path

from lumisurf.cli import main

TINY_RUN = [
    "model.sdf.grid.implementation=torch",
    "data.synthetic_views=4",
    "data.synthetic_resolution=24",
    "train.batch_rays=64",
    "train.val_every=0",
    "eval.mesh_resolution=32",
]


def tiny_stage1_run(run: Path, preset: str | None = None, extra: tuple[str, ...] = ()) -> Path:
    """Train ``preset`` (the default one when None) for 2 steps into ``run`` and extract its mesh."""
    chosen = ["--preset", preset] if preset else []
    args = ["train", *chosen, "--max-steps", "2", "--out", str(run), "--no-progress", "train.finalize=false"]
    assert main([*args, *TINY_RUN, *extra]) == 0
    assert main(["extract", str(run)]) == 0
    return run
