"""Render speed of trained SDF runs: today's full volume renderer against surface-first, same run, same views.

For each RUN folder, renders the first ``--views`` test views (train views when there is no test split) at
``--downscale`` with

* ``volume``: the full sampler on every ray (``eval.surface.enabled=false``, ``train.chunk_rays`` chunks, the
  background evaluated on every ray) -- the renderer every job used before surface-first rendering;
* ``surface``: the run's ``eval.surface`` settings (sphere tracing + a band, fallback rays on the full sampler,
  the background skipped behind opaque pixels),

and prints seconds per view (median over views), PSNR against the ground truth for both, their difference and
the PSNR of one render against the other, the mean normal and depth differences (pixels both call opaque),
the fraction of pixels sent to the full sampler, field evaluations per pixel and the background's share of the
render time. ``--threads`` sets the Warp CPU launches of the hash grid (``hash_grid_warp.set_cpu_threads``).

    python benchmarks/render_speed.py RUN [RUN ...] [--views 2] [--downscale 1] [--threads 1]
        [--markdown benchmarks/results/render_speed.md]
    PYTHONPATH=OLD_CHECKOUT python benchmarks/render_speed.py RUN ... --volume-only   # older code's renderer
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

import lumisurf.models.surface as surface_model
from lumisurf.data.load import load_scene_normalized_as
from lumisurf.encodings import hash_grid_warp
from lumisurf.eval.image_metrics import psnr
from lumisurf.jobs.restore import load_run
from lumisurf.train.visualize import gt_image, render_views_for

_BG_SECONDS = [0.0]


def _timed_background(fn):
    def wrapped(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(self, *args, **kwargs)
        _BG_SECONDS[0] += time.perf_counter() - t0
        return out

    return wrapped


surface_model.SurfaceModel._background = _timed_background(surface_model.SurfaceModel._background)


def render_mode(loaded, split, views: int, ds: int, surface: bool | None) -> dict:
    """``surface`` None: the run's config as it is (older code without ``eval.surface``: its only renderer)."""
    cfg = (
        loaded.cfg
        if surface is None
        else replace(
            loaded.cfg, eval=replace(loaded.cfg.eval, surface=replace(loaded.cfg.eval.surface, enabled=surface))
        )
    )
    seconds, bg, outs = [], [], []
    for i in range(views):
        _BG_SECONDS[0] = 0.0
        t0 = time.perf_counter()
        outs.append(render_views_for(loaded.model, split, i, cfg, loaded.device, ds))
        seconds.append(time.perf_counter() - t0)
        bg.append(_BG_SECONDS[0])
    return {"seconds": seconds, "bg": bg, "outs": outs}


def volume_only(run: Path, views: int, ds: int) -> dict:
    """Seconds per view and PSNR of the run's own renderer (for timing older code: ``--volume-only``)."""
    loaded = load_run(run)
    scene = load_scene_normalized_as(loaded.cfg.data, loaded.normalization)
    split = scene.split("test" if "test" in scene.splits else "train")
    views = min(views, len(split))
    render_views_for(loaded.model, split, 0, loaded.cfg, loaded.device, 8)  # warm-up
    res = render_mode(loaded, split, views, ds, None)
    gts = [gt_image(split, i, loaded.cfg, ds) for i in range(views)]
    return {
        "run": run.name,
        "seconds": statistics.median(res["seconds"]),
        "psnr": statistics.mean(
            psnr(o["rgb"].clamp(0, 1), g[: o["rgb"].shape[0], : o["rgb"].shape[1]]) for o, g in zip(res["outs"], gts)
        ),
    }


def compare(run: Path, views: int, ds: int) -> dict:
    loaded = load_run(run)
    scene = load_scene_normalized_as(loaded.cfg.data, loaded.normalization)
    split = scene.split("test" if "test" in scene.splits else "train")
    views = min(views, len(split))
    render_views_for(loaded.model, split, 0, loaded.cfg, loaded.device, 8)  # warm-up (kernel load, caches)
    full, fast = (render_mode(loaded, split, views, ds, s) for s in (False, True))
    row = {
        "run": run.name,
        "views": views,
        "size": "x".join(map(str, full["outs"][0]["rgb"].shape[:2])),
        "background": loaded.model.background_kind,
    }
    gts = [gt_image(split, i, loaded.cfg, ds) for i in range(views)]
    for name, res in (("volume", full), ("surface", fast)):
        row[f"{name}_s"] = statistics.median(res["seconds"])
        row[f"{name}_bg_share"] = sum(res["bg"]) / sum(res["seconds"])
        row[f"{name}_psnr"] = statistics.mean(
            psnr(o["rgb"].clamp(0, 1), g[: o["rgb"].shape[0], : o["rgb"].shape[1]]) for o, g in zip(res["outs"], gts)
        )
    row["speedup"] = row["volume_s"] / row["surface_s"]
    row["dpsnr"] = row["surface_psnr"] - row["volume_psnr"]
    row["mutual_psnr"] = statistics.mean(
        psnr(a["rgb"].clamp(0, 1), b["rgb"].clamp(0, 1)) for a, b in zip(full["outs"], fast["outs"])
    )
    normal_d, depth_d = [], []
    for a, b in zip(full["outs"], fast["outs"]):
        solid = ((a["opacity"] > 0.5) & (b["opacity"] > 0.5))[..., 0]
        normal_d.append(float((a["normal"] - b["normal"]).norm(dim=-1)[solid].mean()) if solid.any() else 0.0)
        depth_d.append(float((a["depth"] - b["depth"]).abs()[solid].mean()) if solid.any() else 0.0)
    row["normal_diff"], row["depth_diff"] = statistics.mean(normal_d), statistics.mean(depth_d)
    return row


COLUMNS = (
    ("run", "{}"),
    ("size", "{}"),
    ("background", "{}"),
    ("volume_s", "{:.2f}"),
    ("surface_s", "{:.2f}"),
    ("speedup", "{:.1f}x"),
    ("volume_psnr", "{:.3f}"),
    ("surface_psnr", "{:.3f}"),
    ("dpsnr", "{:+.3f}"),
    ("mutual_psnr", "{:.1f}"),
    ("normal_diff", "{:.4f}"),
    ("depth_diff", "{:.4f}"),
    ("volume_bg_share", "{:.0%}"),
    ("surface_bg_share", "{:.0%}"),
)


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| " + " | ".join(c for c, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(f.format(r[c]) for c, f in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--downscale", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument(
        "--volume-only",
        action="store_true",
        help="time only the run's own renderer (run with PYTHONPATH=OLD_CHECKOUT to time older code)",
    )
    args = ap.parse_args()
    hash_grid_warp.set_cpu_threads(args.threads)
    if args.volume_only:
        lines = ["| run | seconds/view | PSNR |", "|---|---:|---:|"]
        for run in args.runs:
            r = volume_only(run, args.views, args.downscale)
            lines.append(f"| {r['run']} | {r['seconds']:.2f} | {r['psnr']:.3f} |")
            print(lines[-1], flush=True)
        print("\n".join(lines))
        return
    header = (
        f"views={args.views} downscale={args.downscale} warp_cpu_threads={args.threads} "
        f"torch_threads={torch.get_num_threads()} (seconds: median per view; PSNR: mean over views)"
    )
    rows = []
    for run in args.runs:
        rows.append(compare(run, args.views, args.downscale))
        print(markdown(rows[-1:], "").strip().splitlines()[-1], flush=True)
    text = markdown(rows, header)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
