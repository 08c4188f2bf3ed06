"""Checks of a written scene recomputed from its files only (transforms, PNGs, depth, gt_mesh.ply).

Per view: ``strict`` = share of GT-mesh vertices whose containing pixel has alpha > 0.5, ``within1px`` =
alpha > 0.5 anywhere in the 3x3 neighbourhood; ``mask_iou`` = IoU of alpha > 0.5 and the GT hit mask
(depth > 0); ``facing`` = share of GT normals with dot(n, view ray) < 0; ``unit`` = share of GT normals
with length > 0.98; ``depth_err`` = |z-depth from the file - z-depth of an independent ray cast of
gt_mesh.ply (trimesh/Embree) through the pixel centre| where both hit; ``hit_agree`` = share of pixels
where the ray cast and depth > 0 agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from scenegen.cameras import pixel_rays, project


def _read_png16(path: Path) -> np.ndarray:
    try:
        from lumisurf.data.images import read_png16
    except ImportError:  # imageio decodes 16-bit PNGs too
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    return read_png16(path)


def _vertex_hits(alpha: np.ndarray, V: np.ndarray, c2w: np.ndarray) -> tuple[float, float]:
    h, w = alpha.shape
    uv, z = project(V, c2w, w, h)
    col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    ok = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    mask = alpha > 0.5
    pad = np.pad(mask, 1)
    near = np.zeros_like(mask)
    for dr in range(3):
        for dc in range(3):
            near |= pad[dr : dr + h, dc : dc + w]
    c, r = np.clip(col, 0, w - 1), np.clip(row, 0, h - 1)
    return float((ok & mask[r, c]).mean()), float((ok & near[r, c]).mean())


def _raycast_depth(mesh: trimesh.Trimesh, c2w: np.ndarray, w: int, h: int) -> np.ndarray:
    """z-depth [H, W] of the first hit of each pixel-centre ray (0 = miss)."""
    o, d = pixel_rays(c2w, w, h)
    loc, idx, _ = mesh.ray.intersects_location(o, d, multiple_hits=False)
    depth = np.zeros(w * h)
    depth[idx] = (loc - c2w[:3, 3]) @ (-c2w[:3, 2])
    return depth.reshape(h, w)


def _gt_view(stem: Path, alpha: np.ndarray, c2w: np.ndarray, mesh) -> dict:
    h, w = alpha.shape
    depth = np.load(stem.with_name(stem.name + "_depth.npy")).astype(np.float64)
    hit = depth > 0
    mask = alpha > 0.5
    n = _read_png16(stem.with_name(stem.name + "_normal.png"))[..., :3].astype(np.float64) / 65535 * 2 - 1
    _, rays = pixel_rays(c2w, w, h)
    nh = n[hit]
    out = {
        "mask_iou": float((mask & hit).sum() / max(1, (mask | hit).sum())),
        "facing": float(((nh * rays.reshape(h, w, 3)[hit]).sum(-1) < 0).mean()) if hit.any() else 1.0,
        "unit": float((np.linalg.norm(nh, axis=-1) > 0.98).mean()) if hit.any() else 1.0,
    }
    if mesh is not None:
        cast = _raycast_depth(mesh, c2w, w, h)
        both = hit & (cast > 0)
        out["hit_agree"] = float(((cast > 0) == hit).mean())
        out["depth_err"] = np.abs(depth[both] - cast[both])
    return out


def _split(root: Path, name: str, V: np.ndarray, mesh) -> dict:
    meta = json.loads((root / f"transforms_{name}.json").read_text())
    rows, errs = [], []
    for fr in meta["frames"]:
        stem = root / fr["file_path"]
        c2w = np.asarray(fr["transform_matrix"], np.float64)
        alpha = np.asarray(Image.open(stem.with_suffix(".png")))[..., 3] / 255.0
        row = dict(zip(("strict", "within1px"), _vertex_hits(alpha, V, c2w)))
        if stem.with_name(stem.name + "_depth.npy").is_file():
            row.update(_gt_view(stem, alpha, c2w, mesh))
            errs.append(row.pop("depth_err", np.zeros(0)))
        rows.append(row)
    return _summarise(rows, errs)


def _summarise(rows: list[dict], errs: list[np.ndarray]) -> dict:
    out = {"views": len(rows)}
    for key in rows[0]:
        vals = np.array([r[key] for r in rows])
        out[f"{key}_min"], out[f"{key}_mean"] = float(vals.min()), float(vals.mean())
    e = np.concatenate(errs) if errs else np.zeros(0)
    if e.size:
        out["depth_err_p50_p99_max"] = [float(np.percentile(e, 50)), float(np.percentile(e, 99)), float(e.max())]
        out["depth_err_frac_below_2e-3"] = float((e < 2e-3).mean())
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def verify_scene(root) -> dict:
    """Checks per split (train, test, relight) from the files of the scene folder ``root``."""
    root = Path(root)
    mesh = trimesh.load(root / "gt_mesh.ply", process=False)
    V = np.asarray(mesh.vertices, np.float64)
    has_ray = trimesh.ray.has_embree
    out = {
        "max_vertex_radius": float(np.linalg.norm(V, axis=1).max()),
        "raycaster": "embree" if has_ray else "none (depth_err/hit_agree skipped)",
    }
    for name in ("train", "test", "relight"):
        if (root / f"transforms_{name}.json").is_file():
            out[name] = _split(root, name, V, mesh if has_ray else None)
    return out


DESCRIPTION = __doc__.split("\n\n", 1)[1].strip().replace("\n", " ")
