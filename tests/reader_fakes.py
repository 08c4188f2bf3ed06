"""Camera poses shared by the fake datasets of the reader tests (OpenCV c2w, world +z up)."""

from __future__ import annotations

import numpy as np


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
