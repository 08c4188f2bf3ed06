"""Segmentation metrics of a run with a material assignment: material-id IoU against GT ``*_matid.png``
(clusters matched to GT ids by the best assignment) and cross-view consistency of the rendered
assignment (surface points of every view reprojected into the others, visibility by depth)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from lumisurf.eval.material_metrics import cross_view_consistency, matid_iou, matid_path, read_matid_maps
from lumisurf.losses.segmentation import gather_probs_per_view

PALETTE = np.array(
    [[230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [204, 121, 167], [213, 94, 0], [0, 114, 178]],
    dtype=np.uint8,
)  # color-blind safe (Okabe-Ito)
POINTS_PER_VIEW = 500


def id_map(probs: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """Cluster id [h, w] (argmax of the probabilities), -1 where opacity <= 0.5."""
    ids = probs.argmax(-1)
    return torch.where(opacity[..., 0] > 0.5, ids, torch.full_like(ids, -1))


def id_map_image(ids: np.ndarray) -> np.ndarray:
    """[h, w, 3] uint8: one color per cluster, white background."""
    out = np.full((*ids.shape, 3), 255, np.uint8)
    fg = ids >= 0
    out[fg] = PALETTE[ids[fg] % len(PALETTE)]
    return out


def z_depth(cameras, cam: int, depth: torch.Tensor, downscale: int) -> torch.Tensor:
    """Camera-z depth [h, w] from ray-distance depth [h, w, 1] of ``render_view``."""
    _, d, h, w = cameras.pixel_rays(cam, downscale)
    forward = cameras.c2w[cam, :3, 2]
    return depth[..., 0] * (d @ forward).reshape(h, w).to(depth)


def segmentation_metrics(
    split,
    renders: list[dict],
    downscale: int,
    generator: torch.Generator | None = None,
    out_dir=None,
    stems: list[str] | None = None,
) -> dict:
    """``renders``: per view of ``split`` (in order) the dict of ``render_view`` with material_probs."""
    ids = [id_map(r["material_probs"], r["opacity"]) for r in renders]
    if out_dir is not None and stems:
        for stem, m in zip(stems, ids):
            Image.fromarray(id_map_image(m.cpu().numpy())).save(out_dir / f"{stem}_matid.png")
    metrics: dict = {}
    files = split.files[: len(renders)] if split.files else []
    if files and all(matid_path(f).exists() for f in files):
        gt = read_matid_maps(files)
        if downscale > 1:
            gt = gt[:, downscale // 2 :: downscale, downscale // 2 :: downscale]
        pred = torch.stack(ids).cpu().numpy()[:, : gt.shape[1], : gt.shape[2]]
        res = matid_iou(pred, gt)
        metrics.update(matid_iou=res["mean_iou"], matid_iou_per_class=res["iou_per_class"])
    metrics.update(_consistency(split, renders, downscale, generator or torch.Generator().manual_seed(0)))
    return metrics


def _consistency(split, renders: list[dict], downscale: int, generator: torch.Generator) -> dict:
    cams = split.cameras
    views = list(range(len(renders)))
    if len(views) < 2:
        return {}
    probs = torch.stack([r["material_probs"].cpu() for r in renders])  # [V, h, w, K]
    probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-6)
    zmaps = torch.stack([z_depth(cams, v, r["depth"].cpu(), downscale) for v, r in enumerate(renders)])
    points = []
    for v, r in enumerate(renders):
        o, d, h, w = cams.pixel_rays(v, downscale)
        fg = (r["opacity"].cpu().reshape(-1) > 0.5).nonzero()[:, 0]
        pick = fg[torch.randperm(fg.numel(), generator=generator)[:POINTS_PER_VIEW]]
        points.append(o[pick] + d[pick] * r["depth"].cpu().reshape(-1, 1)[pick])
    pts = torch.cat(points)
    cams_ds = _downscaled(cams, downscale)
    per_view, valid = gather_probs_per_view(probs, cams_ds, views, pts, zmaps, depth_tol=0.02)
    res = cross_view_consistency(per_view, valid)
    return {"seg_reprojection_iou": res["reprojection_iou"], "seg_reprojection_variance": res["variance"]}


def _downscaled(cameras, f: int):
    """Cameras whose intrinsics address a ``1/f`` image (pixel centres stay at +0.5)."""
    if f <= 1:
        return cameras
    from dataclasses import replace

    return replace(
        cameras,
        fx=cameras.fx / f,
        fy=cameras.fy / f,
        cx=cameras.cx / f,
        cy=cameras.cy / f,
        width=cameras.width // f,
        height=cameras.height // f,
    )
