#!/usr/bin/env python
"""Score saved relit renders again (``RUN/material/relight/<env>/*.png``) with today's ``relight_view_scores``.

    python benchmarks/relight_rescore.py RUNS_ROOT/*/stage2/* --name materials35_rescored

For runs measured before a change to the relight scores (issue 35: the scale alignment now clips our render to
[0, 1] as the 8-bit GT is): the PNGs hold the render as shown (sRGB, 8 bit, alpha = coverage), so the raw PSNR
comes back to within the 8-bit rounding and the aligned one is recomputed from them, without rendering again.
Prints one row per run (the stored row.json figures beside the rescored ones); writes ``results/<name>.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lumisurf.config import load_config
from lumisurf.data.color_space import srgb_to_linear
from lumisurf.data.images import as_float
from lumisurf.data.load import load_scene_normalized_as
from lumisurf.jobs.material_eval import relight_view_scores
from lumisurf.train.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[1]


def rescore(run: Path) -> dict:
    cfg = load_config(run / "material" / "config.yaml")
    scene = load_scene_normalized_as(cfg.data, RunDir(run).load_normalization())
    split = scene.split("relight")
    folder = run / "material" / "relight" / Path(scene.meta["relight_env_map"]).stem
    stems = [Path(f).stem for f in split.files]
    acc: dict[str, list[float]] = {}
    for png in sorted(folder.glob("*.png")):
        i = stems.index(png.stem)
        rgba = torch.from_numpy(np.asarray(Image.open(png), np.float32) / 255.0)
        gt = as_float(split.images[i])
        gt_a = split.masks[i].float()[..., None] if split.masks is not None else torch.ones_like(gt[..., :1])
        scores = relight_view_scores(srgb_to_linear(rgba[..., :3]), rgba[..., 3], gt, gt_a, cfg.data.eval_background)
        for k, v in scores.items():
            acc.setdefault(k, []).append(v)
    return {"views": len(acc.get("relight_psnr", [])), **{k: float(np.mean(v)) for k, v in acc.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="Stage II run folders (with material/relight/)")
    p.add_argument("--name", default="relight_rescored")
    args = p.parse_args(argv)
    lines = [
        f"# Relit renders rescored `{args.name}`",
        "",
        "From the saved PNGs (8-bit sRGB): stored = the row.json figure when measured; rescored = today's scores.",
        "",
        "| run | views | relight PSNR stored / rescored | aligned stored / rescored |",
        "|---|---|---|---|",
    ]
    for run in args.runs:
        row_file = run / "row.json"
        old = json.loads(row_file.read_text()) if row_file.exists() else {}
        new = rescore(run)
        name = f"{run.parent.parent.name}/{run.name}"
        line = (
            f"| {name} | {new['views']} | {old.get('relight_psnr', float('nan')):.2f} / {new['relight_psnr']:.2f} "
            f"| {old.get('relight_psnr_scaled', float('nan')):.2f} / {new['relight_psnr_scaled']:.2f} |"
        )
        print(line, flush=True)
        lines.append(line)
    out = ROOT / "benchmarks" / "results" / f"{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
