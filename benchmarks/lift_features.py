#!/usr/bin/env python
"""How well each material-lift variant splits a two-material object, measured before the lift happens.

The lift (``lumisurf/train/material_lift.py``) turns Stage I into material labels at phase C. To compare its
variants without one training per variant, train a ``lumisurf-seg`` run that stops where the lift would
start and never lifts:

    lumisurf train --data benchmarks/scenes/generated/two_material_000 --preset lumisurf-seg --seed 0 \\
        --max-steps 385 --out runs/prelift/two_material_000 "schedule.phase_ends=[0.05,1.0,1.0,1.0]"

(385 = 70 % of the 550 steps a 5-minute run makes), then

    python benchmarks/lift_features.py runs/prelift/two_material_*  --name prelift

renders 20k random foreground pixels of the training views to surface points, reads the GT material id of
each pixel (``*_matid.png``) and, per variant (features x clustering x feature smoothing), reports the IoU
of the cluster labels and of the min-cut labels against GT (mean over the two materials, best matching) and
the separation of the centres. Written: ``benchmarks/results/lift_<name>.md``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import numpy as np
import torch

from lumisurf.data.load import load_scene_normalized_as
from lumisurf.eval.material_metrics import read_matid_maps
from lumisurf.jobs.restore import load_run
from lumisurf.train.material_lift import (
    cluster_to_heads,
    lift_features,
    pixel_surface_hits,
    smooth_features,
    surface_normals,
)
from lumisurf.train.surface_graph import smooth_labels

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [(f, c, s) for f in ("materials", "views", "both") for c in ("kmeans", "gmm") for s in (0, 2)]


def pair_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean IoU of two labels against two GT ids, under the better of the two matchings."""
    ids = sorted(set(gt.tolist()))
    best = 0.0
    for perm in itertools.permutations(range(2)):
        ious = [((pred == k) & (gt == g)).sum() / max(((pred == k) | (gt == g)).sum(), 1) for k, g in zip(perm, ids)]
        best = max(best, float(np.mean(ious)))
    return best


def surface_samples(loaded, split, n: int, seed: int = 0):
    """Surface points [P, 3] of n random foreground training pixels and the GT id of each pixel [P]."""
    gt_maps = torch.from_numpy(read_matid_maps(split.files))
    fg = (gt_maps > 0).reshape(-1).nonzero()[:, 0]
    flat = fg[torch.randint(fg.numel(), (n,), generator=torch.Generator().manual_seed(seed))]
    points, keep = pixel_surface_hits(loaded.model, split.cameras, flat)
    return points[keep], gt_maps.reshape(-1)[flat][keep].numpy()


def evaluate(run: Path, n_points: int) -> dict:
    loaded = load_run(run)
    split = load_scene_normalized_as(loaded.cfg.data, loaded.normalization).split("train")
    pts, gt = surface_samples(loaded, split, n_points)
    normals = surface_normals(loaded.model, pts)
    lc = loaded.cfg.model.assignment.lift
    heads = loaded.model.color.head_names
    feats = {
        k: lift_features(loaded.model, split.cameras, split.images, split.masks, "specular", pts, normals, k)
        for k in ("materials", "views", "both")
    }
    row = {}
    for kind, method, smooth in VARIANTS:
        f = smooth_features(pts, feats[kind], lc.neighbours, smooth)
        targets, _, sep = cluster_to_heads(f, heads, kind, method)
        cut = smooth_labels(
            pts, normals, targets, lc.neighbours, lc.crease_sharpness, lc.smoothness, lc.unary_floor, lc.creases
        ).numpy()
        row[(kind, method, smooth)] = (pair_iou(targets.argmax(-1).numpy(), gt), pair_iou(cut, gt), sep)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="pre-lift lumisurf-seg run folders")
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--name", default="prelift")
    args = ap.parse_args()
    rows = {}
    for run in args.runs:
        rows[run.name] = evaluate(run, args.points)
        print(run.name, "done", flush=True)
    names = list(rows)
    lines = [
        "| features | clustering | smoothing | " + " | ".join(names) + " | median | worst |",
        "|" + "---|" * (len(names) + 5),
    ]
    for v in VARIANTS:
        cuts = [rows[r][v][1] for r in names]
        cells = [f"{rows[r][v][0]:.3f} / {rows[r][v][1]:.3f}" for r in names]
        lines.append(
            f"| {v[0]} | {v[1]} | {v[2]} | "
            + " | ".join(cells)
            + f" | {statistics.median(cuts):.3f} | {min(cuts):.3f} |"
        )
    table = "\n".join(lines)
    out = ROOT / "benchmarks" / "results" / f"lift_{args.name}.md"
    out.write_text(
        f"# Material-lift variants on pre-lift checkpoints (`{args.name}`)\n\n"
        f"`python benchmarks/lift_features.py {' '.join(str(r) for r in args.runs)}`\n\n"
        "Per scene: IoU of the cluster labels / of the min-cut labels against the GT ids of "
        f"{args.points} random foreground training pixels; median and worst over scenes of the "
        f"min-cut IoU.\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
