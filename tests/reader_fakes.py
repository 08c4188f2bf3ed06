"""Fake datasets and camera poses shared by the reader tests (OpenCV c2w, world +z up)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def look_at_cv(eye, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """OpenCV c2w looking from ``eye`` at ``target`` (world +z up)."""
    eye = np.asarray(eye, float)
    z = np.asarray(target) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    m[:3, 3] = eye
    return m


EYES = [(3.0, 0.5, 1.0), (-0.5, 3.0, 0.8), (-3.0, -0.4, 1.2), (0.3, -3.0, 0.5)]


def write_rgba(path: Path, w=16, h=12, alpha=True):
    """A grey RGBA PNG whose alpha covers the middle half (or nothing: ``alpha=False``)."""
    arr = np.zeros((h, w, 4), np.uint8)
    arr[..., :3] = 128
    arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4, 3] = 255 if alpha else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGBA").save(path)


def fake_blender(root: Path, n=3, sizes=None) -> Path:
    """A NeRF-synthetic (Blender) dataset of ``n`` 16x12 RGBA views (``sizes``: (w, h) per view)."""
    frames = []
    for i in range(n):
        write_rgba(root / "train" / f"r_{i}.png", *(sizes[i] if sizes else (16, 12)))
        frames.append(
            {
                "file_path": f"./train/r_{i}",
                "transform_matrix": (look_at_cv(EYES[i]) @ np.diag([1, -1, -1, 1])).tolist(),
            }
        )
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return root
