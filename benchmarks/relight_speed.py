#!/usr/bin/env python
"""Relight evaluation: time, Monte-Carlo noise and the relight PSNR it reports, per render setting.

    python benchmarks/relight_speed.py RUN [RUN ...] --settings 4:128:iid 1:64:strat --views 16

A setting is ``spp:light_samples:iid|strat`` (rays per pixel, light directions per hit, independent or
Latin-hypercube directions). For each Stage II run (a folder with ``material/material.pt`` whose dataset has a
relight split) and setting: the seconds to render the first ``--views`` relight views, the relight PSNR raw and
scale-aligned over them, and the noise PSNR of view 0 (two independent renders, +3.01 dB). One process, one
setting at a time. Written: ``benchmarks/results/<name>.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lumisurf.data.load import load_scene_normalized_as
from lumisurf.jobs.material import load_material_run
from lumisurf.jobs.material_eval import mc_noise_psnr, relight_metrics
from lumisurf.shading.lighting import find_env_file

ROOT = Path(__file__).resolve().parents[1]


def parse_setting(text: str) -> tuple[int, int, bool]:
    spp, samples, kind = text.split(":")
    if kind not in ("iid", "strat"):
        raise argparse.ArgumentTypeError(f"{text}: the third field is iid or strat")
    return int(spp), int(samples), kind == "strat"


def measure(run: Path, setting: tuple[int, int, bool], views: int) -> dict:
    mrun = load_material_run(run)
    scene = load_scene_normalized_as(mrun.cfg.data, mrun.normalization)
    split = scene.split("relight")
    env = find_env_file(mrun.cfg.data.path, scene.meta["relight_env_map"])
    spp, samples, strat = setting
    m = mrun.cfg.material
    m.render_spp, m.render_light_samples, m.render_stratified = spp, samples, strat
    n = min(views, len(split))
    t0 = time.perf_counter()
    with torch.no_grad():
        rel = relight_metrics(mrun, split, env, mrun.cfg.data.eval_background, None, n, progress=False)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        noise = mc_noise_psnr(mrun, split, env, spp, samples, strat)
    return {"views": n, "seconds": seconds, "noise_psnr": noise, **rel}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--settings", nargs="+", type=parse_setting, default=[(4, 128, False), (1, 64, True)])
    p.add_argument("--views", type=int, default=16)
    p.add_argument("--name", default="relight_speed")
    args = p.parse_args(argv)
    lines = [
        f"# Relight evaluation speed `{args.name}`",
        "",
        f"torch threads {torch.get_num_threads()}; one process. Seconds: relight renders of the first views only "
        "(no files); noise: view 0 rendered twice.",
        "",
        "| run | spp | light samples | directions | views | seconds | s / view | noise PSNR | relight PSNR | "
        "relight PSNR aligned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in args.runs:
        for s in args.settings:
            r = measure(run, s, args.views)
            kind = "strat" if s[2] else "iid"
            row = (
                f"| {run.parent.parent.name}/{run.name} | {s[0]} | {s[1]} | {kind} | {r['views']} "
                f"| {r['seconds']:.1f} | {r['seconds'] / r['views']:.2f} | {r['noise_psnr']:.2f} | "
                f"{r['relight_psnr']:.2f} | {r['relight_psnr_scaled']:.2f} |"
            )
            print(row, flush=True)
            lines.append(row)
    out = ROOT / "benchmarks" / "results" / f"{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
