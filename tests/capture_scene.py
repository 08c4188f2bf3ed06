"""A textured box on a textured floor, ray-cast in numpy from an orbit of cameras: photos with known poses for
structure-from-motion tests (SIFT needs texture; the analytic scenes of the unit tests have little)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lumisurf.data.camera_paths import look_at

HALF = 0.5  # box [-HALF, HALF]^3; the floor is z = -HALF


def _texture(seed: int, res: int = 256, tint=None) -> np.ndarray:
    """Blob noise [res, res, 3] uint8: smooth random colors at several scales (good SIFT corners); with a
    ``tint``, its grey levels (the same corners) in that color."""
    rng = np.random.default_rng(seed)
    out = np.zeros((res, res, 3))
    for cells in (4, 8, 16, 32):
        coarse = rng.random((cells, cells, 3))
        out += np.kron(coarse, np.ones((res // cells, res // cells, 1))) / 4
    if tint is not None:
        out = (out @ np.array([0.299, 0.587, 0.114]))[..., None] * np.asarray(tint)
    return (out.clip(0, 1) * 255).astype(np.uint8)


def orbit(n: int, radius: float = 3.0, height: float = 1.2) -> np.ndarray:
    """n cameras [n, 4, 4] on a circle around the box, looking at its centre."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    up, target = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    return np.stack(
        [look_at(torch.tensor([radius * np.cos(t), radius * np.sin(t), height]), target, up).numpy() for t in a]
    )


def render(c2w: np.ndarray, w: int, h: int, f: float, tex_seed: int = 0, with_mask: bool = False):
    """[h, w, 3] uint8 view of the box (6 textured faces) and the floor (its own texture); with ``with_mask``
    also the box's silhouette [h, w] bool."""
    # a warm box on a cool floor: an object differs in color from its table, as GrabCut (automatic masks) needs
    tex = [_texture(tex_seed + k, tint=(1.25, 0.9, 0.45)) for k in range(6)]
    tex.append(_texture(tex_seed + 6, tint=(0.5, 0.9, 1.3)))
    j, i = np.mgrid[0:h, 0:w] + 0.5
    d = np.stack([(i - w / 2) / f, (j - h / 2) / f, np.ones_like(i)], -1) @ c2w[:3, :3].T
    o = c2w[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (-HALF - o) / d, (HALF - o) / d
    t_in = np.minimum(t0, t1).max(-1)
    t_out = np.maximum(t0, t1).min(-1)
    box = (t_in < t_out) & (t_in > 0)
    t_floor = np.where(d[..., 2] < 0, (-HALF - o[2]) / np.where(d[..., 2] < 0, d[..., 2], -1.0), np.inf)
    img = np.full((h, w, 3), 200, np.uint8)
    floor = ~box & np.isfinite(t_floor)
    p = o + d * t_floor[..., None]
    uv = (((p[..., :2] / 4 + 0.5) % 1.0) * 255).astype(int)  # the floor texture repeats
    img[floor] = tex[6][uv[floor][:, 1], uv[floor][:, 0]]
    p = o + d * t_in[..., None]
    axis = np.abs(p).argmax(-1)
    for k in range(6):
        ax, sign = k // 2, (1 if k % 2 else -1)
        sel = box & (axis == ax) & (np.sign(p[..., ax]) == sign)
        a, b = [q for q in range(3) if q != ax]
        uv = ((p[..., [a, b]] / (2 * HALF) + 0.5) * 255).clip(0, 255).astype(int)
        img[sel] = tex[k][uv[sel][:, 1], uv[sel][:, 0]]
    return (img, box) if with_mask else img


def box_masks(poses: np.ndarray, w: int = 320, h: int = 240, f: float = 300.0) -> np.ndarray:
    """[n, h, w] bool: the box's silhouette in each view of :func:`write_photos`."""
    return np.stack([render(c2w, w, h, f, with_mask=True)[1] for c2w in poses])


def write_photos(folder: Path, n: int = 12, w: int = 320, h: int = 240, f: float = 300.0) -> np.ndarray:
    """``n`` orbit photos ``view_XX.png`` in ``folder``; returns their camera-to-world [n, 4, 4]."""
    folder.mkdir(parents=True, exist_ok=True)
    poses = orbit(n)
    for k, c2w in enumerate(poses):
        Image.fromarray(render(c2w, w, h, f)).save(folder / f"view_{k:02d}.png")
    return poses
