"""Camera poses against reference poses after a similarity alignment (Umeyama on camera centres).

Used to judge structure from motion (``lumisurf data process``) against a dataset's given cameras. Poses are
camera-to-world [n, 4, 4] in the OpenCV convention (any common convention works: only relative rotations and
centres are compared).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Similarity:
    """x_ref = scale * R @ x + t."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]

    def apply(self, x: np.ndarray) -> np.ndarray:  # [n, 3] -> [n, 3]
        return self.scale * x @ self.rotation.T + self.translation


def umeyama(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity mapping points ``src`` [n, 3] onto ``dst`` [n, 3] (Umeyama 1991); n >= 3."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[2, 2] = -1.0
    rot = u @ fix @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float(np.trace(np.diag(sig) @ fix) / var_s)
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


@dataclass
class PoseErrors:
    rotation_deg: np.ndarray  # [n] angle between aligned and reference camera rotations
    centre: np.ndarray  # [n] centre distance after alignment, in units of the reference rig radius
    rig_radius: float  # median distance of the reference centres from their mean
    align: Similarity

    def summary(self) -> dict:
        return {
            "rotation_median_deg": float(np.median(self.rotation_deg)),
            "rotation_max_deg": float(self.rotation_deg.max()),
            "centre_median_rel": float(np.median(self.centre)),
            "centre_max_rel": float(self.centre.max()),
        }


def pose_errors(c2w: np.ndarray, c2w_ref: np.ndarray) -> PoseErrors:
    """Errors of poses ``c2w`` [n, 4, 4] against ``c2w_ref`` [n, 4, 4] (same views, same order)."""
    c2w, ref = np.asarray(c2w, np.float64), np.asarray(c2w_ref, np.float64)
    sim = umeyama(c2w[:, :3, 3], ref[:, :3, 3])
    centres = sim.apply(c2w[:, :3, 3])
    rig = float(np.median(np.linalg.norm(ref[:, :3, 3] - ref[:, :3, 3].mean(0), axis=1)))
    rel = np.einsum("nji,jk,nkl->nil", ref[:, :3, :3], sim.rotation, c2w[:, :3, :3])  # R_ref^T S R
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return PoseErrors(np.degrees(np.arccos(cos)), np.linalg.norm(centres - ref[:, :3, 3], axis=1) / rig, rig, sim)
