"""Occupancy-grid skipping on a trained run: field evaluations per ray and image quality, grid on vs off.

Renders the same test views of RUN twice (the trained occupancy grid, then no grid) and prints
samples per ray, seconds and PSNR/SSIM against the ground truth for both.

    python benchmarks/occupancy_skip.py RUN [--views 4] [--downscale 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lumisurf.data.load import load_scene_normalized_as
from lumisurf.eval.image_metrics import psnr, ssim
from lumisurf.jobs.restore import load_run
from lumisurf.models.surface import RenderState
from lumisurf.train.visualize import gt_image


def render_stats(loaded, split, views: int, ds: int) -> dict:
    model, cfg, dev = loaded.model, loaded.cfg, loaded.device
    cams = split.cameras.to(dev)
    bg = torch.ones(3, device=dev) if cfg.data.background != "black" else torch.zeros(3, device=dev)
    evals, rays, ps, ss, t0 = 0.0, 0, [], [], time.perf_counter()
    for i in range(views):
        o, d, h, w = cams.pixel_rays(i, ds)
        rgb = []
        for j in range(0, o.shape[0], cfg.train.chunk_rays):
            oc, dc = o[j : j + cfg.train.chunk_rays], d[j : j + cfg.train.chunk_rays]
            out = model(oc, dc, bg.expand(oc.shape[0], 3), RenderState(1.0, False, None), need_grad_graph=False)
            evals += float(out["samples_per_ray"]) * out["rgb"].shape[0]
            rays += out["rgb"].shape[0]
            rgb.append(out["rgb"].detach())
        pred = torch.cat(rgb).reshape(h, w, 3).cpu().clamp(0, 1)
        gt = gt_image(split, i, cfg, ds)[:h, :w]
        ps.append(psnr(pred, gt))
        ss.append(ssim(pred, gt))
    return {
        "samples_per_ray": evals / rays,
        "seconds": time.perf_counter() - t0,
        "psnr": sum(ps) / len(ps),
        "ssim": sum(ss) / len(ss),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--downscale", type=int, default=2)
    a = ap.parse_args()
    loaded = load_run(a.run)
    if loaded.model.occupancy is None:
        raise SystemExit(f"{a.run} was trained without the occupancy grid (sampler.occupancy=false)")
    scene = load_scene_normalized_as(loaded.cfg.data, loaded.normalization)
    split = scene.split("test")
    views = min(a.views, len(split))
    with_grid = render_stats(loaded, split, views, a.downscale)
    occ = loaded.model.occupancy
    loaded.model.occupancy = None
    without = render_stats(loaded, split, views, a.downscale)
    print(f"occupied cells: {occ.occupied.float().mean().item():.3%} of {occ.resolution}^3")
    print("| sampling | field evals / ray | seconds | PSNR | SSIM |\n|---|---|---|---|---|")
    for name, r in (("occupancy grid", with_grid), ("unit sphere only", without)):
        print(f"| {name} | {r['samples_per_ray']:.1f} | {r['seconds']:.1f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    print(f"reduction: {without['samples_per_ray'] / max(with_grid['samples_per_ray'], 1e-9):.1f}x fewer evaluations")


if __name__ == "__main__":
    main()
