"""Geometry metrics between a predicted and a ground-truth mesh: Chamfer distance
(accuracy / completeness) and normal consistency from area-weighted surface samples.

Both meshes must be in the same frame (the dataset's world frame); distances are in its units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from lumisurf.errors import LumisurfError


def load_mesh(path) -> trimesh.Trimesh:
    """Load a triangle mesh (scenes are concatenated); LumisurfError if missing/unreadable/empty."""
    path = Path(path)
    if not path.is_file():
        raise LumisurfError(f"mesh file not found: {path}")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise LumisurfError(f"cannot read mesh {path}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise LumisurfError(f"{path} holds no triangles (empty mesh or a point cloud)")
    return mesh


def sample_surface(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-weighted random surface points ``[n, 3]`` and their face normals ``[n, 3]``."""
    if len(mesh.faces) == 0:
        raise LumisurfError("cannot sample the surface of a mesh with no faces")
    pts, face_idx = trimesh.sample.sample_surface(mesh, int(n), seed=seed)
    return np.asarray(pts, dtype=np.float64), np.asarray(mesh.face_normals[face_idx], dtype=np.float64)


def nearest_points(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each ``src`` point to its nearest ``dst`` point, and that point's index."""
    dist, idx = cKDTree(dst).query(src, k=1, workers=-1)
    return dist, idx


def chamfer_distance(
    mesh_pred: trimesh.Trimesh, mesh_gt: trimesh.Trimesh, n_samples: int = 100_000, seed: int = 0
) -> dict:
    """Chamfer-L1 style metrics from ``n_samples`` surface points on each mesh.

    Returns ``accuracy`` (mean pred->gt distance), ``completeness`` (mean gt->pred),
    ``chamfer`` (their mean) and ``normal_consistency`` (mean |cos| between the face normals of
    nearest-neighbour pairs, both directions; 1 = perfect). The two meshes are sampled with
    independent seeds (``seed``, ``seed + 1``), so a mesh against itself gives the sampling
    noise floor (about half the sample spacing), not exactly 0.
    """
    p_pts, p_nrm = sample_surface(mesh_pred, n_samples, seed)
    g_pts, g_nrm = sample_surface(mesh_gt, n_samples, seed + 1)
    d_pg, i_pg = nearest_points(p_pts, g_pts)
    d_gp, i_gp = nearest_points(g_pts, p_pts)
    acc, comp = float(d_pg.mean()), float(d_gp.mean())
    nc_pg = np.abs((p_nrm * g_nrm[i_pg]).sum(-1)).mean()
    nc_gp = np.abs((g_nrm * p_nrm[i_gp]).sum(-1)).mean()
    return {
        "chamfer": 0.5 * (acc + comp),
        "accuracy": acc,
        "completeness": comp,
        "normal_consistency": float(0.5 * (nc_pg + nc_gp)),
    }
