"""Cross-sections of extracted meshes against the ground truth: where a surface is dented or bulged.

    python benchmarks/mesh_slices.py --gt SCENE/gt_mesh.ply RUN_A/mesh.ply RUN_B/mesh.ply \\
        --labels lumisurf nero --out benchmarks/results/slices_glossy_005.png

Three planes through the GT mesh's bounding-box centre, one per world axis. Each panel draws the GT section
(black) and every mesh's section (one colour each) in the plane's coordinates; the legend carries each mesh's
mean and maximum distance from its section points to the GT surface (world units; to the nearest of 400k
GT surface samples, so ~1e-3 is the floor). Meshes must be in the GT's
frame (lumisurf's mesh.ply is in the dataset's world frame).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402

from lumisurf.eval.geometry_metrics import nearest_points, sample_surface  # noqa: E402

COLOURS = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple"]


def section_segments(mesh: trimesh.Trimesh, origin: np.ndarray, axis: int) -> np.ndarray:
    """[S, 2, 3] line segments where the plane through ``origin`` normal to world ``axis`` cuts ``mesh``."""
    normal = np.eye(3)[axis]
    segs = trimesh.intersections.mesh_plane(mesh, normal, origin)
    return np.asarray(segs).reshape(-1, 2, 3)


def slice_figure(gt: trimesh.Trimesh, meshes: list[trimesh.Trimesh], labels: list[str], title: str):
    centre = gt.bounds.mean(0)
    gt_samples = sample_surface(gt, 400_000)[0]  # distances to the GT surface: to its nearest dense sample
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    for axis, ax in enumerate(axes):
        keep = [i for i in range(3) if i != axis]
        for mesh, label, colour in [(gt, "GT", "black")] + list(zip(meshes, labels, COLOURS)):
            segs = section_segments(mesh, centre, axis)
            if len(segs) == 0:
                continue
            text = label
            if mesh is not gt:
                dist = nearest_points(segs.reshape(-1, 3), gt_samples)[0]
                text = f"{label}: mean {dist.mean():.4f}, max {dist.max():.4f}"
            lines = segs[:, :, keep]  # [S, 2, 2]
            xs = np.stack([lines[:, 0, 0], lines[:, 1, 0], np.full(len(lines), np.nan)], 1).reshape(-1)
            ys = np.stack([lines[:, 0, 1], lines[:, 1, 1], np.full(len(lines), np.nan)], 1).reshape(-1)
            ax.plot(xs, ys, color=colour, lw=1.6 if mesh is gt else 1.1, label=text)
        ax.set_aspect("equal")
        ax.set_title(f"plane {'xyz'[axis]} = {centre[axis]:.3f}")
        ax.set_xlabel("xyz"[keep[0]])
        ax.set_ylabel("xyz"[keep[1]])
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("meshes", nargs="+", type=Path)
    ap.add_argument("--gt", type=Path, required=True)
    ap.add_argument("--labels", nargs="+", help="one per mesh (default: the parent folder names)")
    ap.add_argument("--title", default="")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    labels = args.labels or [p.parent.name for p in args.meshes]
    if len(labels) != len(args.meshes):
        ap.error(f"{len(args.meshes)} meshes but {len(labels)} labels")
    gt = trimesh.load(args.gt, force="mesh", process=False)
    meshes = [trimesh.load(p, force="mesh", process=False) for p in args.meshes]
    fig = slice_figure(gt, meshes, labels, args.title or args.gt.parent.name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
