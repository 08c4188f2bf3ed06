"""Normalisation: a similarity that puts the object inside the unit sphere.

``x_norm = (x_world - center) / scale`` (see :class:`~lumisurf.data.scene.Normalization`).
The rotation is always the identity: world directions, hence GT normals and environment-map
lookups, are the same in both frames; only positions and distances change (by ``1/scale``).

Methods (``auto`` picks the first that applies):

* ``scale_mat``   -- given by the format (NeuS/IDR ``scale_mat``), read by the reader.
* ``visual_hull`` -- training masks exist: carve a voxel grid with the masks, then
  ``center`` = centre of the bounding box of the kept voxels and
  ``scale = margin * max |kept - center|`` (plus half a voxel diagonal), so the object fits.
* ``camera_rig``  -- no masks: ``center`` = least-squares point closest to every optical axis,
  ``scale = 0.5 * median camera distance`` to it, i.e. cameras end up at distance ~2 and the
  unit sphere fills the central part of the views (instant-ngp-style captures frame the object
  there). A heuristic: the object size is not observable without masks.
* ``sparse_points`` -- no masks, but a structure-from-motion point cloud (COLMAP ``points3D``): ``center`` =
  the point closest to every optical axis, ``scale = margin *`` the 95th percentile of the distances from it
  to the points inside the image of at least half the training views (the object and what is right around
  it, not the room), so the object, not the room, fills the unit sphere.
* ``identity``    -- keep the world frame.

Sanity rules shared by ``lumisurf data check`` and training: a scene needs at least
``MIN_TRAIN_VIEWS`` training views (else :class:`DataError`), and the cameras must look at the unit
sphere from outside: ``data check`` warns when any camera lies inside it, training refuses when most
training cameras do (:func:`check_cameras_outside`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.data.cameras import Cameras, distort_points
from lumisurf.data.scene import Normalization, SceneData, Split
from lumisurf.errors import DataError

Method = Literal["auto", "scale_mat", "visual_hull", "sparse_points", "camera_rig", "identity"]
METHODS = ("auto", "scale_mat", "visual_hull", "sparse_points", "camera_rig", "identity")
MIN_TRAIN_VIEWS = 2  # one view leaves depth unobserved (and the axes' closest point undefined)
_INDEX_FILES = {
    "blender": "transforms_train.json",
    "ngp": "transforms.json",
    "neus": "cameras_sphere.npz",
    "llff": "poses_bounds.npy",
}  # the file that lists a format's views, for messages


def normalize_scene(scene: SceneData, method: Method = "auto") -> SceneData:
    """A copy of ``scene`` whose cameras (every split) live in the normalised frame.

    Images, masks and normals are shared, not copied (normals are rotation-free invariant); depths are scaled.
    An already normalised scene is returned unchanged. ``gt_mesh`` stays in world units;
    map it with ``scene.normalization.to_normalized``.
    """
    if scene.normalized:
        return scene
    norm = estimate_normalization(scene, method)
    center = torch.tensor(norm.center, dtype=torch.float32)
    splits = {
        name: replace(
            sp,
            cameras=sp.cameras.transformed(norm.scale, center),
            depths=None if sp.depths is None else sp.depths / norm.scale,
        )
        for name, sp in scene.splits.items()
    }
    return replace(scene, splits=splits, normalization=norm, normalized=True)


def estimate_normalization(scene: SceneData, method: Method = "auto", margin: float = 1.1) -> Normalization:
    """Similarity world -> unit-sphere frame of ``scene`` (in its world frame) by ``method``."""
    if method not in METHODS:
        raise DataError(f"unknown normalisation method '{method}'; choose one of {', '.join(METHODS)}")
    train = scene.split("train") if "train" in scene.splits else next(iter(scene.splits.values()))
    check_view_count(scene, len(train))
    if method == "auto":
        if scene.normalization is not None:
            return scene.normalization
        method = (
            "visual_hull"
            if train.masks is not None
            else "sparse_points"
            if scene.meta.get("points3D") is not None
            else "camera_rig"
        )
    if method == "identity":
        return Normalization(source="identity")
    if method == "scale_mat":
        if scene.normalization is None:
            raise DataError(
                f"{scene.root}: normalisation 'scale_mat' asked for, but the "
                f"'{scene.format}' reader found no scale matrix"
            )
        return scene.normalization
    if method == "camera_rig":
        return camera_rig_normalization(train.cameras)
    if method == "sparse_points":
        if scene.meta.get("points3D") is None:
            raise DataError(f"{scene.root}: normalisation 'sparse_points' needs a COLMAP model with points3D")
        return sparse_points_normalization(train.cameras, scene.meta["points3D"], margin)
    if train.masks is None:
        raise DataError(f"{scene.root}: normalisation 'visual_hull' needs masks in the train split")
    try:
        return visual_hull_normalization(train, margin=margin)
    except DataError as e:
        raise DataError(f"{scene.root}: {e}") from None


# ----------------------------------------------------------------------------- sanity rules
def scene_source(scene: SceneData) -> str:
    """The file listing the scene's views (the format's index file), else its folder, for messages."""
    if scene.format == "synthetic":
        return "the built-in scene (data.synthetic_views)"
    index = _INDEX_FILES.get(scene.format)
    return str(scene.root / index) if index else str(scene.root)


def check_view_count(scene: SceneData, n_train: int) -> None:
    """DataError unless the training split holds at least ``MIN_TRAIN_VIEWS`` views."""
    if n_train >= MIN_TRAIN_VIEWS:
        return
    hint = (
        ""
        if scene.format in ("blender", "synthetic")
        else "; views held out for testing (data.holdout_every) do not count"
    )
    raise DataError(f"need at least {MIN_TRAIN_VIEWS} training views (found {n_train}) in {scene_source(scene)}{hint}")


def cameras_inside(cams: Cameras, radius: float = 1.0) -> Tensor:
    """[n] bool: camera centres at distance <= ``radius`` from the origin (normalised frame)."""
    return cams.c2w[:, :3, 3].norm(dim=-1) <= radius


def cameras_inside_message(n_inside: int, n: int, what: str = "cameras") -> str:
    """One sentence on cameras inside the unit sphere, with the usual causes."""
    return (
        f"{n_inside}/{n} {what} lie inside the unit sphere (the object region) after normalisation; "
        f"the object must be seen from outside it (poses at a wrong scale, or masks/alpha covering "
        f"the whole image?)"
    )


def check_cameras_outside(scene: SceneData) -> None:
    """Refuse to train (DataError) when most training cameras of a normalised ``scene`` lie inside the
    unit sphere: rays would start inside the region the SDF models. ``data check`` only warns."""
    train = scene.split("train") if "train" in scene.splits else next(iter(scene.splits.values()))
    inside = cameras_inside(train.cameras)
    n_in, n = int(inside.sum()), len(inside)
    if 2 * n_in > n:
        raise DataError(
            f"{scene_source(scene)}: {cameras_inside_message(n_in, n, 'training cameras')}; "
            f"run `lumisurf data check` on it"
        )


# ----------------------------------------------------------------------------- camera rig
def optical_axes(cams: Cameras) -> tuple[Tensor, Tensor]:
    """Camera centres [n, 3] and unit viewing directions [n, 3] (OpenCV +z), float64."""
    o = cams.c2w[:, :3, 3].double()
    d = cams.c2w[:, :3, 2].double()
    return o, d / d.norm(dim=-1, keepdim=True)


def closest_point_to_axes(cams: Cameras, ridge: float = 1e-6) -> Tensor:
    """Least-squares point closest to every optical axis, [3] float64 (world units).

    Minimises ``sum_i |(I - d_i d_i^T)(p - o_i)|^2``; a tiny ridge towards the mean camera
    centre keeps it defined when all axes are parallel (forward-facing captures).
    """
    o, d = optical_axes(cams)
    eye = torch.eye(3, dtype=o.dtype, device=o.device)
    proj = eye - d[:, :, None] * d[:, None, :]  # [n, 3, 3]
    lam = ridge * len(cams)
    a = proj.sum(0) + lam * eye
    b = (proj @ o[:, :, None]).sum(0)[:, 0] + lam * o.mean(0)
    return torch.linalg.solve(a, b)


def camera_rig_normalization(cams: Cameras, rig_scale: float = 0.5) -> Normalization:
    """centre = point closest to all optical axes, scale = rig_scale * median camera distance."""
    p = closest_point_to_axes(cams)
    dist = (cams.c2w[:, :3, 3].double() - p).norm(dim=-1)
    scale = rig_scale * float(dist.median())
    if not math.isfinite(scale) or scale <= 0:
        raise DataError("camera_rig normalisation: cameras coincide with their look-at point")
    return Normalization(center=tuple(float(v) for v in p), scale=scale, source="camera_rig")


# ----------------------------------------------------------------------------- sparse points
def seen_fraction(cams: Cameras, pts: Tensor) -> Tensor:
    """[N]: the fraction of the cameras whose image contains each world point [N, 3] (in front of it)."""
    count = torch.zeros(pts.shape[0], device=pts.device)
    for i in range(len(cams)):
        u, v, valid = project_points(cams, i, pts)
        count += (valid & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)).float()
    return count / len(cams)


def sparse_points_normalization(
    cams: Cameras, points, margin: float = 1.1, min_view_frac: float = 0.5, quantile: float = 0.95
) -> Normalization:
    """centre = closest point to the optical axes; scale = margin * the ``quantile`` distance from it to the
    points seen by at least ``min_view_frac`` of the views (the better-seen half when fewer than 10 are)."""
    pts = torch.as_tensor(points, dtype=torch.float32, device=cams.c2w.device)
    frac = seen_fraction(cams, pts)
    keep = frac >= min_view_frac
    if int(keep.sum()) < 10:
        keep = frac >= frac.median()
    p = closest_point_to_axes(cams).float()
    radius = float((pts[keep] - p).norm(dim=-1).quantile(quantile))
    if not math.isfinite(radius) or radius <= 0:
        raise DataError("sparse_points normalisation: the points seen by most views coincide with the look-at point")
    return Normalization(center=tuple(float(v) for v in p), scale=margin * radius, source="sparse_points")


# ----------------------------------------------------------------------------- visual hull
def project_points(cams: Cameras, i: int, pts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel coordinates (col, row) of world points [N, 3] in camera ``i``, with distortion.

    Returns u [N], v [N] (continuous pixels, centres at +0.5) and ``valid`` [N]: in front of the
    camera and inside the (25 % padded) undistorted field of view, where distortion is trusted.
    """
    rot, t = cams.c2w[i, :3, :3], cams.c2w[i, :3, 3]
    pc = (pts - t) @ rot  # world -> camera: R^T (x - t), as row vectors
    z = pc[:, 2]
    zs = z.clamp_min(1e-8)
    x, y = pc[:, 0] / zs, pc[:, 1] / zs
    w, h = cams.width, cams.height
    fx, fy, cx, cy = cams.fx[i], cams.fy[i], cams.cx[i], cams.cy[i]
    u0, v0 = fx * x + cx, fy * y + cy
    valid = (z > 1e-6) & (u0 > -0.25 * w) & (u0 < 1.25 * w) & (v0 > -0.25 * h) & (v0 < 1.25 * h)
    if cams.distortion is not None:
        x, y = distort_points(x, y, cams.distortion[i])
    return fx * x + cx, fy * y + cy, valid


def carve(points: Tensor, cams: Cameras, masks: Tensor, factor: int, min_views: int) -> Tensor:
    """Indices of ``points`` [N, 3] inside ``masks`` [n, h, w] (bool, pixel (u, v) at (u, v) / factor)
    in every view that sees them.

    A view that does not see a point (behind it or outside its image) does not carve it; a point
    must be seen by at least ``min_views`` views to be kept.
    """
    alive = torch.arange(points.shape[0], device=points.device)
    seen = torch.zeros_like(alive)
    h, w = masks.shape[1:]
    for i in range(len(cams)):
        u, v, valid = project_points(cams, i, points[alive])
        inside = valid & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
        col = (u / factor).clamp(0, w - 1).long()
        row = (v / factor).clamp(0, h - 1).long()
        keep = ~inside | masks[i][row, col]
        alive, seen = alive[keep], (seen + inside.long())[keep]
        if alive.numel() == 0:
            break
    return alive[seen >= min_views]


def cell_centres(lo: Tensor, hi: Tensor, res: int) -> tuple[Tensor, Tensor]:
    """Cell-centre grid points [res^3, 3] of the box [lo, hi] and the cell size [3]."""
    cell = (hi - lo) / res
    axes = [lo[k] + (torch.arange(res, dtype=lo.dtype, device=lo.device) + 0.5) * cell[k] for k in range(3)]
    g = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    return g.reshape(-1, 3), cell


def carving_masks(masks: Tensor, max_size: int = 256) -> tuple[Tensor, int]:
    """Binary masks (coverage > 0.5) [n, h, w] for carving, at most ~``max_size`` pixels a side.

    Block max-pooling by ``factor = ceil(max(H, W) / max_size)`` then a 3x3 max (1 cell) makes a
    conservative, slightly dilated mask (by 1-2 blocks); look a pixel up at ``(u, v) / factor``.
    """
    factor = max(1, math.ceil(max(masks.shape[1:]) / max_size))
    m = (masks > 0.5).float()[:, None]
    if factor > 1:
        m = F.max_pool2d(m, factor, stride=factor, ceil_mode=True)
    m = F.max_pool2d(m, 3, stride=1, padding=1)
    return m[:, 0] > 0.5, factor


def view_cone_tan(cams: Cameras) -> float:
    """Largest tangent of the angle between the optical axis and an image corner (any camera)."""
    corners_x = torch.stack([-cams.cx, cams.width - cams.cx], -1) / cams.fx[:, None]  # [n, 2]
    corners_y = torch.stack([-cams.cy, cams.height - cams.cy], -1) / cams.fy[:, None]
    return float((corners_x.abs().amax(-1) ** 2 + corners_y.abs().amax(-1) ** 2).sqrt().max())


def visual_hull_normalization(
    split: Split, margin: float = 1.1, res: int = 64, min_view_frac: float = 0.5
) -> Normalization:
    """Carve the masks of ``split`` in two passes (a coarse box, then the hull's box refined).

    Pass 1 covers a cube around the point ``p`` closest to all optical axes, of half size
    ``D * min(1, 1.5 * tan(corner angle))`` with ``D`` the mean camera distance to ``p`` (what the
    cameras see around ``p``); pass 2 re-grids the bounding box of the pass-1 hull (padded by
    2 cells), so the result is accurate to ~1/64 of the object's size.
    """
    cams = split.cameras
    dev = cams.c2w.device
    masks, factor = carving_masks(split.masks.to(dev))
    min_views = max(1, math.ceil(min_view_frac * len(cams)))
    p = closest_point_to_axes(cams).float().to(dev)
    dist = float((cams.c2w[:, :3, 3] - p).norm(dim=-1).mean())
    half = dist * min(1.0, 1.5 * view_cone_tan(cams))
    lo, hi = p - half, p + half
    for _ in range(2):
        pts, cell = cell_centres(lo, hi, res)
        kept = pts[carve(pts, cams, masks, factor, min_views)]
        if kept.shape[0] == 0:
            raise DataError(
                "visual hull is empty: no point lies inside the masks of every training view that "
                "sees it (masks inverted, or poses not matching the images?); use normalisation "
                "'camera_rig' to skip masks"
            )
        lo, hi = kept.min(0).values - 2 * cell, kept.max(0).values + 2 * cell
    center = 0.5 * (kept.min(0).values + kept.max(0).values)
    radius = float((kept - center).norm(dim=-1).max()) + 0.5 * float(cell.norm())
    return Normalization(center=tuple(float(v) for v in center), scale=margin * radius, source="visual_hull")
