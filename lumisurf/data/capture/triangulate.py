"""Sparse object points from images with *known* cameras (OpenCV SIFT, optional extra ``capture``).

For datasets that come with poses but no SfM point cloud (NeuS, LLFF, Blender, instant-ngp): each view is matched
with its nearest views, matches off the epipolar line the given cameras predict are dropped (in a turntable
capture the room does not move with the object, so its matches fail this test), and the rest are triangulated
(linear DLT) and kept when they reproject within a pixel or two in both views and lie in front of both cameras.
Points are in the cameras' world frame.
"""

from __future__ import annotations

import numpy as np
import torch

from lumisurf.data.cameras import Cameras
from lumisurf.errors import DataError


def opencv():
    try:
        import cv2
    except ImportError:
        raise DataError('automatic masks need OpenCV: pip install -e ".[capture]"') from None
    return cv2


def projection_matrices(cams: Cameras) -> np.ndarray:
    """[n, 3, 4] float64 ``K [R | t]`` (world -> pixels, pixel centres at +0.5; distortion ignored)."""
    K = cams.intrinsics_matrix().double().cpu().numpy()
    w2c = np.linalg.inv(cams.c2w.double().cpu().numpy())
    return K @ w2c[:, :3, :4]


def nearest_views(cams: Cameras, k: int) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of each view with its ``k`` nearest camera centres whose axes differ by < 60 deg."""
    c = cams.centers.double().cpu()
    axes = cams.c2w[:, :3, 2].double().cpu()
    d = torch.cdist(c, c)
    d[(axes @ axes.T) < 0.5] = float("inf")
    d.fill_diagonal_(float("inf"))
    pairs = set()
    for i in range(len(cams)):
        for j in d[i].argsort()[:k].tolist():
            if np.isfinite(float(d[i, j])):
                pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def fundamental(P1: np.ndarray, P2: np.ndarray) -> np.ndarray:
    """F with ``x2^T F x1 = 0`` for the projections [3, 4] of two cameras."""
    c1 = np.linalg.svd(P1)[2][-1]  # the centre of camera 1: P1 c1 = 0
    e2 = P2 @ c1
    e2x = np.array([[0, -e2[2], e2[1]], [e2[2], 0, -e2[0]], [-e2[1], e2[0], 0]])
    return e2x @ P2 @ np.linalg.pinv(P1)


def epipolar_distance(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Symmetric point-to-epipolar-line distance (pixels) of matches x1, x2 [m, 2]."""
    h1, h2 = np.c_[x1, np.ones(len(x1))], np.c_[x2, np.ones(len(x2))]
    l2, l1 = h1 @ F.T, h2 @ F  # lines in image 2 and image 1
    num = np.abs((h2 * l2).sum(1))
    return np.maximum(num / np.hypot(l2[:, 0], l2[:, 1]), num / np.hypot(l1[:, 0], l1[:, 1]))


def dlt(P1: np.ndarray, P2: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Linear triangulation of matches x1, x2 [m, 2] -> world points [m, 3]."""
    A = np.stack(
        [x1[:, :1] * P1[2] - P1[0], x1[:, 1:] * P1[2] - P1[1], x2[:, :1] * P2[2] - P2[0], x2[:, 1:] * P2[2] - P2[1]], 1
    )  # [m, 4, 4]
    X = np.linalg.svd(A)[2][:, -1]
    return X[:, :3] / X[:, 3:]


def reprojection(P: np.ndarray, X: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel error [m] and depth [m] of world points X [m, 3] observed at x [m, 2] by camera P."""
    p = np.c_[X, np.ones(len(X))] @ P.T
    return np.linalg.norm(p[:, :2] / p[:, 2:] - x, axis=1), p[:, 2]


def sift_features(gray: list[np.ndarray], n_features: int = 4000):
    cv2 = opencv()
    sift = cv2.SIFT_create(nfeatures=n_features)
    out = []
    for g in gray:
        kp, desc = sift.detectAndCompute(g, None)
        out.append((np.array([k.pt for k in kp], np.float64).reshape(-1, 2) + 0.5, desc))  # +0.5: our pixel centres
    return out


def match_pair(d1, d2, ratio: float = 0.8) -> np.ndarray:
    """[m, 2] indices of mutual-best SIFT matches passing Lowe's ratio test."""
    if d1 is None or d2 is None or len(d1) < 2 or len(d2) < 2:
        return np.zeros((0, 2), int)
    cv2 = opencv()
    bf = cv2.BFMatcher(cv2.NORM_L2)
    fwd = bf.knnMatch(d1, d2, k=2)
    best_back = {m.queryIdx: m.trainIdx for m in bf.match(d2, d1)}
    keep = [
        (a.queryIdx, a.trainIdx)
        for a, b in fwd
        if a.distance < ratio * b.distance and best_back.get(a.trainIdx) == a.queryIdx
    ]
    return np.array(keep, int).reshape(-1, 2)


def triangulate_known_poses(
    gray: list[np.ndarray], cams: Cameras, neighbours: int = 4, max_error: float = 1.5, min_motion: float = 3.0
) -> np.ndarray:
    """Object points [N, 3] (world frame) from grey images [height, width] uint8 of the cameras ``cams``;
    ``max_error``: epipolar and reprojection error, ``min_motion``: least image motion of a match (pixels)."""
    P = projection_matrices(cams)
    feats = sift_features(gray)
    points, pair_ids = [], []
    for i, j in nearest_views(cams, neighbours):
        m = match_pair(feats[i][1], feats[j][1])
        if len(m) < 8:
            continue
        x1, x2 = feats[i][0][m[:, 0]], feats[j][0][m[:, 1]]
        ok = epipolar_distance(fundamental(P[i], P[j]), x1, x2) < max_error
        ok &= np.linalg.norm(x1 - x2, axis=1) > min_motion  # static in the image: the room of a turntable
        if ok.sum() == 0:
            continue
        X = dlt(P[i], P[j], x1[ok], x2[ok])
        e1, z1 = reprojection(P[i], X, x1[ok])
        e2, z2 = reprojection(P[j], X, x2[ok])
        X = X[(e1 < max_error) & (e2 < max_error) & (z1 > 0) & (z2 > 0)]
        points.append(X)
        pair_ids.append(np.full(len(X), len(pair_ids)))
    if not points:
        return np.zeros((0, 3))
    X, ids = np.concatenate(points), np.concatenate(pair_ids)
    depth = float(np.median(np.linalg.norm(X - cams.centers.double().cpu().numpy().mean(0), axis=1)))
    return X[confirmed(X, ids, radius=max_error * depth / float(cams.fx.mean()))]


def confirmed(X: np.ndarray, ids: np.ndarray, radius: float) -> np.ndarray:
    """[N] bool: points [N, 3] with a point of another view pair (``ids`` [N]) within ``radius``: a surface point
    is found again by the pairs that see it, a chance match satisfying one pair's epipolar geometry is not."""
    from scipy.spatial import cKDTree

    ok = np.zeros(len(X), bool)
    for i, near in enumerate(cKDTree(X).query_ball_point(X, radius)):
        ok[i] = bool((ids[near] != ids[i]).any())
    return ok
