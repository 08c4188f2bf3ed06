"""Automatic masks (GrabCut seeded by 3D points, refined by a voxel vote): geometry helpers by hand, and masks
of the textured box scene against its true silhouettes. OpenCV comes with the 'capture' extra."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lumisurf.data.cameras import Cameras
from lumisurf.data.capture.automask import ground_plane, split_points
from lumisurf.data.capture.triangulate import confirmed, dlt, epipolar_distance, fundamental, reprojection

sys.path.insert(0, str(Path(__file__).parent))
from capture_scene import box_masks, orbit, write_photos  # noqa: E402


def _box_points(rng, n=600):
    """Points on the faces of the cube [-0.5, 0.5]^3."""
    p = rng.uniform(-0.5, 0.5, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.choice([-0.5, 0.5], n)
    return p


def test_ground_plane_is_the_floor_not_a_face_of_the_object():
    rng = np.random.default_rng(0)
    box = _box_points(rng)
    box = box[box[:, 2] > -0.49]  # the bottom face lies on the floor, unseen
    floor = np.c_[rng.uniform(-0.55, 0.55, (400, 2)), np.full(400, -0.5)]  # inside the unit sphere
    cams = orbit(8)[:, :3, 3]  # height 1.2, all above the floor
    n, d = ground_plane(np.concatenate([box, floor]), cams)
    np.testing.assert_allclose(n, [0, 0, 1], atol=0.02)  # refit on the inliers: the box's lowest points too
    assert d == pytest.approx(-0.5, abs=0.02)
    obj, ground = split_points(np.concatenate([box, floor]), (n, d))
    assert len(ground) >= 400 and (obj[:, 2] > -0.44).all()
    # without a floor the top face has the cameras on one side but the rest of the box beneath it: no plane
    assert ground_plane(box, cams) is None


def test_two_view_geometry_by_hand():
    rng = np.random.default_rng(1)
    poses = torch.as_tensor(orbit(6), dtype=torch.float32)
    cams = Cameras(poses, *(torch.full((6,), v) for v in (300.0, 300.0, 160.0, 120.0)), width=320, height=240)
    from lumisurf.data.capture.triangulate import projection_matrices

    P = projection_matrices(cams)
    X = rng.uniform(-0.5, 0.5, (20, 3))
    x = [(np.c_[X, np.ones(20)] @ P[k].T) for k in (0, 1)]
    x1, x2 = (p[:, :2] / p[:, 2:] for p in x)
    F = fundamental(P[0], P[1])
    assert epipolar_distance(F, x1, x2).max() < 1e-6
    assert epipolar_distance(F, x1, x2 + [0, 5.0]).min() > 0.5  # off the line: seen
    np.testing.assert_allclose(dlt(P[0], P[1], x1, x2), X, atol=1e-8)
    err, z = reprojection(P[0], X, x1)
    assert err.max() < 1e-8 and (z > 0).all()
    # the camera's own pixel convention: the principal point is where the optical axis lands
    axis_pt = poses[0, :3, 3].double().numpy() + poses[0, :3, 2].double().numpy()
    p = P[0] @ np.r_[axis_pt, 1.0]
    np.testing.assert_allclose(p[:2] / p[2], [160.0, 120.0], atol=1e-6)


def test_confirmed_needs_another_pair():
    X = np.array([[0, 0, 0], [0.001, 0, 0], [1, 1, 1], [1.001, 1, 1], [5, 5, 5]], float)
    ids = np.array([0, 1, 2, 2, 3])
    assert confirmed(X, ids, radius=0.01).tolist() == [True, True, False, False, False]


def _iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_auto_masks_from_known_poses_match_the_box(tmp_path):
    pytest.importorskip("cv2", reason="automatic masks need the 'capture' extra (OpenCV)")
    from lumisurf.data.capture.automask import auto_masks, full_size
    from lumisurf.data.images import load_image_uint8

    poses = write_photos(tmp_path, n=12)
    gt = box_masks(poses)
    images = [load_image_uint8(tmp_path / f"view_{k:02d}.png")[0] for k in range(12)]
    cams = Cameras(
        torch.as_tensor(poses, dtype=torch.float32),
        *(torch.full((12,), v) for v in (300.0, 300.0, 160.0, 120.0)),
        width=320,
        height=240,
    )
    masks = auto_masks(images, cams)  # no points: triangulated from the images
    ious = [_iou(full_size(m, 320, 240) > 0, g) for m, g in zip(masks, gt)]
    assert np.mean(ious) >= 0.9 and min(ious) >= 0.8, ious
