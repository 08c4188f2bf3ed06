"""NeRO's visible-surface Chamfer distance (``chamfer_visible``), beside our whole-surface one.

NeRO (``eval_synthetic_shape.py``) scores only what the test cameras see: the depth of each test view is
back-projected into world points, the points of all views are thinned to one point per ``voxel`` (0.01 world
units; the centroid of the points in each cell, as Open3D's ``voxel_down_sample``), and the Chamfer distance
is the mean of both directions' mean nearest-neighbour distances. NeRO takes the ground-truth points from
rendered GT depth maps; we ray-cast the GT mesh through the same pixels, which is the same surface.

So interior walls, a lid's underside and any surface no test view sees do not count, where our
``chamfer`` (area-weighted samples of the whole mesh) counts them. Distances are in the meshes' frame
(the dataset's world frame); cameras are :class:`lumisurf.data.cameras.Cameras` in that frame.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from lumisurf.data.cameras import Cameras
from lumisurf.eval.geometry_metrics import nearest_points
from lumisurf.renderers.mesh_tracer import MeshTracer

NERO_VOXEL = 0.01  # NeRO's voxel_down_sample size, in world units of its ~unit-radius objects


def visible_points(mesh: trimesh.Trimesh, cameras: Cameras, downscale: int = 1) -> np.ndarray:
    """[N, 3] first hits of every pixel-centre ray of every camera (every ``downscale``-th pixel) on ``mesh``."""
    tracer = MeshTracer(mesh.vertices, mesh.faces)
    cams = cameras.to("cpu")
    pts = []
    for cam in range(len(cams)):
        origins, dirs, _, _ = cams.pixel_rays(cam, downscale)
        hits = tracer.intersect(origins.double(), dirs.double())
        pts.append(hits.points[hits.hit].numpy())
    return np.concatenate(pts, 0) if pts else np.zeros((0, 3))


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """[M, 3] centroids of the points ``[N, 3]`` falling in each occupied cell of a ``voxel``-sized grid."""
    if len(points) == 0:
        return points
    if voxel <= 0:
        raise ValueError(f"voxel size must be > 0, got {voxel}")
    keys = np.floor((points - points.min(0)) / voxel).astype(np.int64)  # [N, 3]
    _, cell, count = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    cell = cell.reshape(-1)
    sums = np.zeros((len(count), 3))
    np.add.at(sums, cell, points)
    return sums / count[:, None]


def visible_chamfer(
    mesh_pred: trimesh.Trimesh,
    mesh_gt: trimesh.Trimesh,
    cameras: Cameras,
    voxel: float = NERO_VOXEL,
    downscale: int = 1,
) -> dict:
    """``chamfer_visible`` (NeRO's metric) and its two directions, from the pixels of ``cameras``.

    Returns ``chamfer_visible`` = 0.5 (accuracy + completeness), ``chamfer_visible_accuracy`` (mean pred->GT
    distance), ``chamfer_visible_completeness`` (GT->pred) and the point counts after thinning. ``None`` values
    when either mesh is not seen by any pixel.
    """
    with torch.no_grad():
        pred = voxel_downsample(visible_points(mesh_pred, cameras, downscale), voxel)
        gt = voxel_downsample(visible_points(mesh_gt, cameras, downscale), voxel)
    out: dict = {"chamfer_visible_points_pred": len(pred), "chamfer_visible_points_gt": len(gt)}
    if len(pred) == 0 or len(gt) == 0:
        return {**out, "chamfer_visible": None, "chamfer_visible_accuracy": None, "chamfer_visible_completeness": None}
    acc = float(nearest_points(pred, gt)[0].mean())
    comp = float(nearest_points(gt, pred)[0].mean())
    return {
        **out,
        "chamfer_visible": 0.5 * (acc + comp),
        "chamfer_visible_accuracy": acc,
        "chamfer_visible_completeness": comp,
    }
