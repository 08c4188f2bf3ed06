"""Surface-first rendering agrees with full volume rendering on public scenes (needs ../shared/data; skips
cleanly without it): a short ``lumisurf`` training (150 steps of 256 rays on 8 views), then a test view rendered
both ways, PSNR against the ground truth within 0.1 dB. ``benchmarks/render_speed.py`` does the same on 5-minute
runs of every public scene (``benchmarks/results/render_speed.md``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import shared_dataset

from lumisurf.cli import main
from lumisurf.data.load import load_scene_normalized_as
from lumisurf.eval.image_metrics import psnr
from lumisurf.jobs.restore import load_run
from lumisurf.train.visualize import gt_image, render_views_for


@pytest.mark.parametrize("name", ["glossy_spot", "fox"])  # masked (constant background) and NeRF++ background
def test_surface_first_psnr_within_a_tenth_of_a_db(name, tmp_path):
    data = shared_dataset(name)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(run),
                "--no-progress",
                "--max-steps",
                "150",
                "data.max_views=8",
                "train.batch_rays=256",
                "train.val_every=0",
            ]
        )
        == 0
    )
    loaded = load_run(run)
    scene = load_scene_normalized_as(loaded.cfg.data, loaded.normalization)
    split = scene.split("test" if "test" in scene.splits else "train")
    gt = gt_image(split, 0, loaded.cfg, 2)
    renders = {}
    for enabled in (False, True):
        cfg = replace(
            loaded.cfg, eval=replace(loaded.cfg.eval, surface=replace(loaded.cfg.eval.surface, enabled=enabled))
        )
        renders[enabled] = render_views_for(loaded.model, split, 0, cfg, loaded.device, 2)["rgb"].clamp(0, 1)
    full, fast = renders[False], renders[True]
    gt = gt[: full.shape[0], : full.shape[1]]
    assert abs(psnr(fast, gt) - psnr(full, gt)) <= 0.1
    assert psnr(fast, full) > 40.0
