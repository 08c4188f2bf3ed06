"""Speed of the sparse-voxel rasterizer (issue 14 targets): render time of one view, ray-voxel segments per
second forward + backward, peak memory.

    python benchmarks/raster_speed.py [--repeats 5] [--backend warp|torch] [--out benchmarks/results/raster_speed.md]

Scene: a shell of voxels around a sphere of radius 0.6 (a surface, as a trained model has), density
rising to opaque inside it, cut from a dense grid at level 7 (about 50k voxels) or 8 (about 300k);
cameras at distance 2.5 looking at the centre. One process; the numbers are medians over ``--repeats``
renders after one warm-up (Warp compiles its kernels once, on the first call ever).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lumisurf.data.synthetic import look_at_cameras  # noqa: E402
from lumisurf.voxels.binning import bin_voxels  # noqa: E402
from lumisurf.voxels.octree import CORNER_OFFSETS, ijk_to_path  # noqa: E402
from lumisurf.voxels.raster import rasterize_tiles  # noqa: E402
from lumisurf.voxels.structure import VoxelOctree  # noqa: E402


def shell_scene(level: int, layers: float):
    """Voxels within ``layers`` voxel sizes of the sphere |x| = 0.6; raw density from the SDF."""
    n, size = 1 << level, 2.0 / (1 << level)
    centre = (torch.arange(n) + 0.5) * size - 1.0
    cells = []
    for i in range(n):  # one x slice at a time: a dense level-8 grid would not fit in memory
        yz = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1).reshape(-1, 2)
        r = torch.sqrt(centre[i] ** 2 + centre[yz[:, 0]] ** 2 + centre[yz[:, 1]] ** 2)
        keep = yz[(r - 0.6).abs() < layers * size]
        cells.append(torch.cat([torch.full((len(keep), 1), i), keep], 1))
    ijk = torch.cat(cells)
    lv = torch.full((len(ijk),), level)
    tree = VoxelOctree(ijk_to_path(ijk, lv), lv, torch.full((3,), -1.0), 2.0)
    lo, size_t = tree.boxes()
    corners = lo[:, None] + CORNER_OFFSETS.float()[None] * size_t[:, None, None]
    raw = (-(corners.norm(dim=-1) - 0.6) / size * 4.0).clamp(-10.0, 10.0)  # [N, 8]
    rgb = torch.rand(len(tree), 3, generator=torch.Generator().manual_seed(0))
    return tree, lo, size_t, raw.contiguous(), rgb


def time_view(tree, lo, size, corners, rgb, width, height, backend, repeats, grad: bool):
    cams = look_at_cameras(np.array([[1.8, 1.2, 1.1]]), width, height, fov_deg=50.0)
    o, d, _, _ = cams.pixel_rays(0)
    bg = torch.ones(3)
    times, segs = [], 0
    for i in range(repeats + 1):
        c = corners.clone().requires_grad_(grad)
        r = rgb.clone().requires_grad_(grad)
        t0 = time.perf_counter()
        with torch.set_grad_enabled(grad):
            binned = bin_voxels(
                tree.path,
                lo,
                size,
                cams.c2w[0],
                float(cams.fx[0]),
                float(cams.fy[0]),
                float(cams.cx[0]),
                float(cams.cy[0]),
                width,
                height,
            )
            out = rasterize_tiles(binned, o, d, lo, size, c, r, bg, width, height, backend=backend)
            if grad:
                (out["rgb"].sum() + out["depth"].sum()).backward()
        if i:
            times.append(time.perf_counter() - t0)
        segs = int(out["segments"].sum()) if "segments" in out else 0
    return statistics.median(times), (max(times) - min(times)), segs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="warp", choices=["warp", "torch"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rows = [
        "| voxels | view | backend | render ms (no grad) | spread ms | fwd+bwd ms | segments | fwd+bwd M segments/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level, layers in ((7, 1.6), (8, 2.1)):
        scene = shell_scene(level, layers)
        for w, h in ((200, 200), (400, 300)):
            ms, spread, segs = time_view(*scene, w, h, args.backend, args.repeats, grad=False)
            ms_g, _, segs = time_view(*scene, w, h, args.backend, args.repeats, grad=True)
            rate = segs / ms_g / 1e6 if segs else float("nan")
            rows.append(
                f"| {len(scene[0])} | {w}x{h} | {args.backend} | {1e3 * ms:.0f} | {1e3 * spread:.0f} | "
                f"{1e3 * ms_g:.0f} | {segs} | {rate:.2f} |"
            )
            print(rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = (
        "\n".join(rows) + f"\n\npeak resident memory of the process: {peak:.0f} MiB; torch threads: "
        f"{torch.get_num_threads()}\n"
    )
    print(text)
    if args.out:
        args.out.write_text(
            f"# Sparse-voxel rasterizer speed\n\n`python benchmarks/raster_speed.py "
            f"{' '.join(argv or sys.argv[1:])}`\n\n{text}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
