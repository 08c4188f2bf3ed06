"""Camera layout of the shared Mitsuba scenes (glossy_bunny, glossy_spot, two_materials).

Per camera, in this order from ``numpy.random.default_rng(seed)``: z/|eye| uniform in [-0.35, 0.95],
azimuth uniform in [0, 2 pi), |eye| uniform in [3.2, 3.8]; looking at the origin with world +z up;
training cameras first, then test. ``seed = 0`` with 64 + 16 cameras reproduces glossy_bunny's
``transforms_train/test.json`` to 1e-15.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

CAMERA_ANGLE_X = math.radians(36.0)
Z_RANGE = (-0.35, 0.95)
DIST_RANGE = (3.2, 3.8)


def look_at_origin(eye: np.ndarray) -> np.ndarray:
    """OpenGL/Blender camera-to-world 4x4 (x right, y up, looks along -z) at ``eye`` towards the origin."""
    z = eye / np.linalg.norm(eye)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(z, x), z, eye
    return m


def sample_cameras(seed: int, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """(train [n_train, 4, 4], test [n_test, 4, 4]) camera-to-world matrices."""
    rng = np.random.default_rng(seed)
    mats = []
    for _ in range(n_train + n_test):
        z = rng.uniform(*Z_RANGE)
        phi = rng.uniform(0.0, 2.0 * np.pi)
        r = rng.uniform(*DIST_RANGE)
        s = math.sqrt(1.0 - z * z)
        mats.append(look_at_origin(r * np.array([s * math.cos(phi), s * math.sin(phi), z])))
    mats = np.stack(mats) if mats else np.zeros((0, 4, 4))
    return mats[:n_train], mats[n_train:]


def focal_px(width: int) -> float:
    return 0.5 * width / math.tan(0.5 * CAMERA_ANGLE_X)


def write_transforms(path: Path, split: str, c2w: np.ndarray, env_map: str) -> None:
    """``transforms_<split>.json``: camera_angle_x, env_map, frames ``./<split>/r_i`` + transform_matrix."""
    frames = [{"file_path": f"./{split}/r_{i}", "transform_matrix": m.tolist()} for i, m in enumerate(c2w)]
    body = {"camera_angle_x": CAMERA_ANGLE_X, "env_map": env_map, "frames": frames}
    Path(path).write_text(json.dumps(body, indent=2))


def pixel_rays(c2w: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """World origins and unit directions [H*W, 3] of the rays through the pixel centres (row-major)."""
    f = focal_px(width)
    col, row = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(col - 0.5 * width) / f, -(row - 0.5 * height) / f, -np.ones_like(col)], -1).reshape(-1, 3)
    d = d_cam @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], d.shape).copy(), d


def project(points: np.ndarray, c2w: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (col, row) [n, 2] (pixel centres at +0.5) and z-depth [n] of world points."""
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]
    z = -cam[:, 2]
    f = focal_px(width)
    uv = np.stack([0.5 * width + f * cam[:, 0] / z, 0.5 * height - f * cam[:, 1] / z], -1)
    return uv, z
