"""The sparse-voxel presets through the CLI: train (with pruning/subdivision), extract, render, eval, resume."""
from __future__ import annotations

import json

import pytest
import torch

from lumisurf.cli import main

TINY = ["--device", "cpu", "--no-progress", "data.synthetic_resolution=24", "data.synthetic_views=6",
        "eval.mesh_resolution=32", "eval.chamfer_samples=2000", "train.finalize=false", "train.val_every=0",
        "voxels.init_level=4", "voxels.adapt_every=0.2", "voxels.adapt_until=0.9", "voxels.sh_band_every=0.2"]


@pytest.mark.parametrize("preset", ["svraster", "svraster-sdf"])
def test_voxel_preset_end_to_end(preset, tmp_path, capsys):
    out = tmp_path / preset
    # density starts at 0 (not SVRaster's -10: transparent) so that 5 steps leave a level set to mesh
    extra = ["voxels.geo_init=0.0"] if preset == "svraster" else []
    args = ["train", "--preset", preset, "--out", str(out), "--max-steps", "5"] + TINY + extra
    assert main(args) == 0
    log = capsys.readouterr()
    assert "subdivided" in log.out + log.err  # the layout changed during the run
    for cmd in (["extract", str(out)], ["render", str(out)], ["eval", str(out)]):
        assert main(cmd) == 0, cmd
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["psnr"] > 5 and metrics["chamfer"] > 0
    assert main(args[:5] + ["--max-steps", "7", "--resume"] + args[7:]) == 0
    assert torch.load(out / "ckpt" / "last.pt", weights_only=True)["step"] == 7
