"""``lumisurf vis``: pictures for looking inside a run.

* ``seg-reprojection``: one surface point (picked in a view) reprojected into every view of the split;
  each panel shows that view's rendered material assignment with the point marked and its probabilities
  there (or 'occluded' when the view's depth does not reach it).
* ``hash-features``: per-level feature magnitude of the SDF hash grid on the three axis-aligned slices
  through the origin (normalised frame), one row per level.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lumisurf.errors import LumisurfError  # noqa: E402
from lumisurf.eval.segmentation_eval import id_map, id_map_image, z_depth  # noqa: E402
from lumisurf.train.visualize import render_views_for  # noqa: E402


def _pick_pixel(out: dict, pixel: tuple[int, int] | None) -> tuple[int, int]:
    opacity = out["opacity"][..., 0]
    if pixel is not None:
        return pixel
    fg = (opacity > 0.5).nonzero()
    if fg.numel() == 0:
        raise LumisurfError("seg-reprojection: the reference view shows no surface")
    centre = fg.float().mean(0)
    row, col = fg[((fg.float() - centre) ** 2).sum(-1).argmin()].tolist()
    return col, row


def seg_reprojection(
    loaded,
    scene,
    out_path: Path,
    split_name: str = "test",
    view: int = 0,
    pixel: tuple[int, int] | None = None,
    downscale: int = 2,
    max_views: int = 12,
) -> Path:
    if not loaded.model.segmented:
        raise LumisurfError(
            "seg-reprojection: this run has no material assignment (train with "
            "--preset lumisurf-seg or model.assignment.enabled=true)"
        )
    split = scene.split(split_name)
    cams = split.cameras.to(loaded.device)
    n = min(len(split), max_views)
    renders = [render_views_for(loaded.model, split, v, loaded.cfg, loaded.device, downscale) for v in range(n)]
    col, row = _pick_pixel(renders[view], pixel)
    o, d, h, w = cams.pixel_rays(view, downscale)
    i = row * w + col
    point = (o[i] + d[i] * renders[view]["depth"].reshape(-1, 1)[i]).cpu()
    cols = min(4, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(3 * cols, 3.2 * ((n + cols - 1) // cols)))
    for v, ax in enumerate(np.atleast_1d(axes).reshape(-1)):
        ax.axis("off")
        if v >= n:
            continue
        r = renders[v]
        ax.imshow(id_map_image(id_map(r["material_probs"], r["opacity"]).cpu().numpy()))
        uv, z = cams.project(point[None].to(cams.c2w), v)
        u, vv = (uv[0] / downscale).tolist()
        inside = 0 <= u < w and 0 <= vv < h and float(z[0]) > 0
        label = "outside"
        if inside:
            zmap = z_depth(cams, v, r["depth"], downscale).cpu()
            visible = abs(float(zmap[int(vv), int(u)]) - float(z[0])) < 0.02
            p = r["material_probs"][int(vv), int(u)].cpu()
            p = p / p.sum().clamp_min(1e-6)
            label = ("p=" + ",".join(f"{x:.2f}" for x in p.tolist())) if visible else "occluded"
            ax.plot([u], [vv], marker="x", color="red" if visible else "grey", markersize=10, mew=2)
        ax.set_title(f"view {v}{' (ref)' if v == view else ''}: {label}", fontsize=8)
    fig.suptitle(f"surface point {np.round(point.numpy(), 3).tolist()} (normalised frame)", fontsize=9)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


@torch.no_grad()
def hash_features(loaded, out_path: Path, resolution: int = 128) -> Path:
    grid = loaded.model.sdf.hash_grid()
    if grid is None:
        raise LumisurfError("hash-features: this run's SDF has no hash grid (sdf backend mlp)")
    t = torch.linspace(-1, 1, resolution, device=loaded.device)
    a, b = torch.meshgrid(t, t, indexing="ij")
    zero = torch.zeros_like(a)
    slices = {"z=0": (a, b, zero), "y=0": (a, zero, b), "x=0": (zero, a, b)}
    L, F_ = grid.n_levels, grid.cfg.n_features
    fig, axes = plt.subplots(L, 3, figsize=(6, 2 * L))
    for j, (name, (x, y, z)) in enumerate(slices.items()):
        feat = grid(torch.stack([x, y, z], -1).reshape(-1, 3)).reshape(resolution, resolution, L, F_)
        mag = feat.norm(dim=-1).cpu().numpy()  # [R, R, L]
        for lvl in range(L):
            ax = axes[lvl, j]
            ax.imshow(mag[..., lvl].T, origin="lower", cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            if lvl == 0:
                ax.set_title(name, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"L{lvl} ({grid.resolutions[lvl]})", fontsize=7)
    fig.suptitle("hash-grid feature magnitude per level", fontsize=9)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path
