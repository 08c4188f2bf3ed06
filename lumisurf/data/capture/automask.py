"""Automatic object masks without learned weights: GrabCut seeded in 3D, refined across views.

Needs cameras and a sparse point cloud (SfM's, or triangulated here from the images with the known cameras:
:mod:`~lumisurf.data.capture.triangulate`), and works in the frame whose unit sphere holds the points most views
see (the ``sparse_points`` normalisation). Per view, at most ``max_size`` pixels a side:

1. **Object region**: a pixel whose ray misses the unit sphere, or meets it only below the ground plane, is
   background for sure. The ground plane (a table, a turntable) is a RANSAC plane through the sparse points in the
   sphere that has the cameras on one side and almost no other point beneath it.
2. **Seeds**: any 3D point of the object projects inside its silhouette in every view, seen or hidden, so the
   silhouette lies in the convex hull of the projected points above the ground (dilated by 5 % of the image for
   textureless rims); outside it is background, as are the ground points away from object points. GrabCut
   (OpenCV: color GMMs + graph cut) labels the rest.
3. **Across views**: the round-1 masks vote on a voxel grid (a voxel stays when at least ``vote`` of the views
   that see it put it inside, and it lies above the ground); the hull's silhouette re-seeds a second GrabCut
   (inside the eroded hull: object, outside the dilated hull: background), which fixes views where color alone
   was ambiguous.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import torch

from lumisurf.data.cameras import Cameras
from lumisurf.data.capture.triangulate import opencv, triangulate_known_poses
from lumisurf.data.normalization import cell_centres, project_points, sparse_points_normalization

GC_BGD, GC_FGD, GC_PR_BGD, GC_PR_FGD = 0, 1, 2, 3  # OpenCV's GrabCut labels


# ----------------------------------------------------------------------------- ground plane
def ground_plane(
    points: np.ndarray,
    centers: np.ndarray,
    tol: float = 0.03,
    iters: int = 400,
    min_inliers: float = 0.15,
    seed: int = 0,
) -> tuple[np.ndarray, float] | None:
    """A plane ``n . x = d`` (unit ``n`` towards the cameras) that supports >= ``min_inliers`` of ``points``
    [N, 3] within ``tol``, with >= 90 % of the cameras ``centers`` [n, 3] above it and < 5 % of the other points
    below it (a table under the object, not a face of it); None when there is none."""
    if len(points) < 20:
        return None
    rng = np.random.default_rng(seed)
    best, best_count = None, int(min_inliers * len(points))
    for _ in range(iters):
        p = points[rng.choice(len(points), 3, replace=False)]
        n = np.cross(p[1] - p[0], p[2] - p[0])
        if np.linalg.norm(n) < 1e-9:
            continue
        n = n / np.linalg.norm(n)
        d = float(n @ p[0])
        if np.median(centers @ n - d) < 0:
            n, d = -n, -d
        h = points @ n - d
        count = int((np.abs(h) < tol).sum())
        if count > best_count and (centers @ n - d > 0).mean() >= 0.9 and (h < -tol).mean() < 0.05:
            best, best_count = (n, d), count
    if best is None:
        return None
    n, d = best
    inl = points[np.abs(points @ n - d) < tol]  # least-squares refit on the inliers
    c = inl.mean(0)
    n2 = np.linalg.svd(inl - c)[2][-1]
    n2 = n2 if n2 @ n > 0 else -n2
    return n2, float(n2 @ c)


def split_points(points: np.ndarray, plane, tol: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """The points [N, 3] inside the unit sphere: those above the ground plane (by 2 ``tol``: object), and those on
    it (within ``tol``: ground; none without a plane)."""
    pts = points[np.linalg.norm(points, axis=1) < 1.0]
    if plane is None:
        return pts, pts[:0]
    h = pts @ plane[0] - plane[1]
    return pts[h > 2 * tol], pts[np.abs(h) < tol]


# ----------------------------------------------------------------------------- per-view seeds
def region_mask(cams: Cameras, i: int, plane, tol: float = 0.03) -> np.ndarray:
    """[height, width] bool: the pixel's ray meets the unit sphere above the ground plane."""
    o, d, hh, ww = cams.pixel_rays(i, downscale=1)
    o, d = o.double(), d.double()
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 1.0)
    hit = disc > 0
    t_far = -b + disc.clamp_min(0).sqrt()
    if plane is not None:
        n, dd = torch.as_tensor(plane[0], dtype=o.dtype), plane[1] + tol
        height, rate = o @ n - dd, d @ n
        t_near = -b - disc.clamp_min(0).sqrt()
        t_plane = torch.where(rate < 0, height / (-rate).clamp_min(1e-12), torch.full_like(rate, float("inf")))
        hit &= (height > 0) & (t_plane > t_near.clamp_min(0)) & (t_far > 0)
    return hit.reshape(hh, ww).numpy()


def splat(cams: Cameras, i: int, pts: torch.Tensor) -> np.ndarray:
    """[height, width] bool: the pixels that world points [N, 3] project into."""
    h, w = cams.height, cams.width
    out = np.zeros((h, w), bool)
    if pts.shape[0] == 0:
        return out
    u, v, valid = project_points(cams, i, pts)
    u, v = u.floor().long(), v.floor().long()
    ok = valid & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    out[v[ok].numpy(), u[ok].numpy()] = True
    return out


def grabcut(img: np.ndarray, labels: np.ndarray, iters: int = 5) -> np.ndarray:
    """GrabCut of ``img`` [h, w, 3] uint8 RGB from ``labels`` [h, w] (GC_*); the object [h, w] bool, only its
    components of at least 10 % of the largest one's area (stray seeds dropped)."""
    cv2 = opencv()
    fg_labels = (labels == GC_FGD) | (labels == GC_PR_FGD)
    if fg_labels.all() or not fg_labels.any():
        return fg_labels
    labels = labels.astype(np.uint8).copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(img[..., ::-1]), labels, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    fg = ((labels == GC_FGD) | (labels == GC_PR_FGD)).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 2:
        return fg > 0
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= 0.1 * areas.max()) + 1
    return np.isin(comp, keep)


def seed_hull(seeds: np.ndarray, margin: int) -> np.ndarray:
    """[h, w] bool: the convex hull of the seed pixels, dilated by ``margin`` pixels (the object's silhouette lies
    in the projection of the convex hull of its points, which is the hull of their projections)."""
    cv2 = opencv()
    out = np.zeros(seeds.shape, np.uint8)
    ys, xs = np.nonzero(seeds)
    if len(xs) >= 3:
        cv2.fillConvexPoly(out, cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)), 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    return cv2.dilate(out, kernel) > 0


def first_labels(region: np.ndarray, seeds: np.ndarray, ground: np.ndarray, margin: int) -> np.ndarray:
    """Round 1: outside the region and the seeds' hull background, inside them probably object; ground-point
    pixels away from every object seed (7 x 7) background. The seeds themselves are not fixed as object: a few
    wrong points (the room of a turntable, on its axis) would pin background to the object."""
    cv2 = opencv()
    region = region & seed_hull(seeds, margin)
    labels = np.where(region, GC_PR_FGD, GC_BGD).astype(np.uint8)
    near = cv2.dilate(seeds.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    labels[ground & ~near] = GC_BGD
    return labels


def hull_labels(region: np.ndarray, hull: np.ndarray, first: np.ndarray, margin: int) -> np.ndarray:
    """Round 2: the hull's silhouette decides, ``margin`` pixels of doubt on each side of its outline."""
    cv2 = opencv()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    inner = cv2.erode(hull.astype(np.uint8), kernel) > 0
    outer = cv2.dilate(hull.astype(np.uint8), kernel) > 0
    labels = np.full(hull.shape, GC_BGD, np.uint8)
    labels[outer & region] = GC_PR_BGD
    labels[hull & region] = GC_PR_FGD
    labels[inner & first] = GC_FGD
    return labels


# ----------------------------------------------------------------------------- across views
def vote_hull(
    cams: Cameras, masks: list[np.ndarray], plane, res: int = 96, vote: float = 0.8, tol: float = 0.03
) -> torch.Tensor:
    """Centres [M, 3] of the voxels of [-1, 1]^3 inside the unit sphere and above the plane that lie inside at
    least ``vote`` of the masks [h, w] of the views that see them."""
    pts, _ = cell_centres(torch.full((3,), -1.0), torch.full((3,), 1.0), res)
    keep = pts.norm(dim=-1) < 1.0
    if plane is not None:
        keep &= pts @ torch.as_tensor(plane[0], dtype=pts.dtype) - plane[1] > tol
    pts = pts[keep]
    inside = torch.zeros(pts.shape[0])
    seen = torch.zeros(pts.shape[0])
    for i, m in enumerate(masks):
        u, v, valid = project_points(cams, i, pts)
        ok = valid & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
        col, row = u.clamp(0, cams.width - 1).long(), v.clamp(0, cams.height - 1).long()
        seen += ok.float()
        inside += (ok & torch.from_numpy(m)[row, col]).float()
    return pts[(seen > 0) & (inside >= vote * seen)]


def hull_silhouette(cams: Cameras, i: int, voxels: torch.Tensor, res: int) -> np.ndarray:
    """[height, width] bool: the voxels' projection, each splatted as a disc of its projected size, holes closed."""
    cv2 = opencv()
    dots = splat(cams, i, voxels).astype(np.uint8)
    dist = float((cams.centers[i]).norm())  # the grid is centred at the origin
    f = float(cams.fx[i])
    r = max(1, math.ceil(f * (2.0 / res) / max(dist - 1.0, 1e-3) * 0.75))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.morphologyEx(cv2.dilate(dots, kernel), cv2.MORPH_CLOSE, kernel) > 0


def resized(cams: Cameras, w: int, h: int) -> Cameras:
    """The cameras of the images resized to w x h (pixel centres at +0.5 scale exactly)."""
    sx, sy = w / cams.width, h / cams.height
    return replace(cams, fx=cams.fx * sx, fy=cams.fy * sy, cx=cams.cx * sx, cy=cams.cy * sy, width=w, height=h)


def points_frame(cams: Cameras, points: np.ndarray) -> tuple[Cameras, np.ndarray]:
    """Cameras and points moved into the frame whose unit sphere holds the points most views see (the
    ``sparse_points`` normalisation: tighter than ``camera_rig``'s guess)."""
    norm = sparse_points_normalization(cams, points)
    c = np.asarray(norm.center)
    return cams.transformed(norm.scale, torch.as_tensor(c, dtype=torch.float32)), (points - c) / norm.scale


def auto_masks(
    images: Iterable[np.ndarray],
    cams: Cameras,
    points: np.ndarray | None = None,
    max_size: int = 400,
    rounds: int = 2,
    progress=None,
) -> list[np.ndarray]:
    """Object masks [h, w] bool (the images resized to at most ``max_size`` pixels a side; :func:`full_size`
    brings one back), one per image [H, W, 3] uint8 of ``cams`` (any world frame; images are read one at a time).

    ``points`` [N, 3] (the cameras' frame): SfM points; None triangulates them from the images and cameras.
    """
    cv2 = opencv()
    s = min(1.0, max_size / max(cams.width, cams.height))
    h, w = max(1, round(cams.height * s)), max(1, round(cams.width * s))
    cams = resized(cams.to("cpu"), w, h)
    small = [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images]
    if points is None:
        points = triangulate_known_poses([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in small], cams)
    cams, points = points_frame(cams, np.asarray(points, np.float64).reshape(-1, 3))
    plane = ground_plane(points[np.linalg.norm(points, axis=1) < 1.0], cams.centers.double().numpy())
    obj, ground = (torch.as_tensor(p, dtype=torch.float32) for p in split_points(points, plane))
    regions = [region_mask(cams, i, plane) for i in range(len(small))]
    margin = max(2, round(0.05 * max(h, w)))
    bar = progress(total=len(small) * rounds) if progress else None
    masks = []
    for i, img in enumerate(small):
        seeds = splat(cams, i, obj)
        m = grabcut(img, first_labels(regions[i], seeds, splat(cams, i, ground), margin))
        # a mask that lost most seeds (object and background of alike colors): the seeds' hull instead
        masks.append(m if (m & seeds).sum() >= 0.5 * seeds.sum() else seed_hull(seeds, 1) & regions[i])
        bar and bar.update()
    for _ in range(rounds - 1):
        voxels = vote_hull(cams, masks, plane)
        first, masks = masks, []
        for i, img in enumerate(small):
            masks.append(grabcut(img, hull_labels(regions[i], hull_silhouette(cams, i, voxels, 96), first[i], margin)))
            bar and bar.update()
    bar and bar.close()
    return masks


def full_size(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A mask of :func:`auto_masks` at the image size: [height, width] uint8, 255 = object."""
    cv2 = opencv()
    return ((cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5) * 255).astype(
        np.uint8
    )
