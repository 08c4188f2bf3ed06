"""NeRO's visible-surface Chamfer (``chamfer_visible``): thinning by hand, analytic spheres, hidden parts."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from lumisurf.data.synthetic import look_at_cameras
from lumisurf.eval.geometry_metrics import chamfer_distance
from lumisurf.eval.visible_chamfer import visible_chamfer, visible_points, voxel_downsample


def _sphere(r: float) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=r)


def _ring_cameras(res: int = 96):
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eyes = np.stack([2.5 * np.cos(angles), 2.5 * np.sin(angles), 0.8 * np.cos(3 * angles)], 1)
    return look_at_cameras(eyes, res, res)


def test_voxel_downsample_by_hand():
    pts = np.array([[0.001, 0.001, 0.0], [0.009, 0.003, 0.0], [0.015, 0.0, 0.0], [0.001, 0.0, 0.0205]])
    out = voxel_downsample(pts, 0.01)
    # cells (from the minimum corner): (0,0,0) holds the first two points, (1,0,0) the third, (0,0,2) the fourth
    expect = np.array([[0.005, 0.002, 0.0], [0.001, 0.0, 0.0205], [0.015, 0.0, 0.0]])
    assert out.shape == (3, 3)
    np.testing.assert_allclose(out[np.lexsort(out.T[::-1])], expect[np.lexsort(expect.T[::-1])], atol=1e-12)
    assert voxel_downsample(np.zeros((0, 3)), 0.01).shape == (0, 3)
    with pytest.raises(ValueError, match="voxel"):
        voxel_downsample(pts, 0.0)


def test_visible_points_lie_on_the_front_of_the_sphere():
    cams = _ring_cameras(32)
    pts = visible_points(_sphere(0.5), cams)
    assert pts.shape[1] == 3 and len(pts) > 500
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 0.5, atol=2e-3)  # icosphere chords: < 2e-3 inside
    # each hit faces its camera: the point is on the half of the sphere towards some camera
    eyes = cams.centers.numpy()
    assert np.all((pts @ eyes.T).max(1) > 0)


def test_same_mesh_scores_exactly_zero():
    m, cams = _sphere(0.5), _ring_cameras(48)
    res = visible_chamfer(m, m, cams)
    assert res["chamfer_visible"] == 0.0 and res["chamfer_visible_points_pred"] == res["chamfer_visible_points_gt"]


def test_concentric_spheres_score_their_gap():
    res = visible_chamfer(_sphere(0.55), _sphere(0.5), _ring_cameras())
    # every thinned point lies 0.05 from the other sphere, plus the lateral gap to the nearest thinned point
    # (< one ~0.01 cell: sqrt(0.05^2 + 0.01^2) = 0.051)
    assert res["chamfer_visible"] == pytest.approx(0.05, rel=0.03)
    assert res["chamfer_visible_accuracy"] == pytest.approx(0.05, rel=0.03)
    assert res["chamfer_visible_completeness"] == pytest.approx(0.05, rel=0.03)


def test_hidden_interior_counts_only_in_the_whole_surface_chamfer():
    gt = _sphere(0.5)
    pred = trimesh.util.concatenate([_sphere(0.5), _sphere(0.2)])  # a closed cavity wall no camera sees
    visible = visible_chamfer(pred, gt, _ring_cameras(48))
    whole = chamfer_distance(pred, gt, n_samples=50_000)
    assert visible["chamfer_visible"] == 0.0
    # whole surface: the inner sphere holds 0.2^2 / (0.5^2 + 0.2^2) = 13.8 % of the area, each point 0.3 away
    assert whole["accuracy"] == pytest.approx(0.138 * 0.3, abs=0.006)


def test_a_mesh_no_camera_sees_gives_none():
    far = _sphere(0.1).apply_translation([0.0, 0.0, 50.0])
    res = visible_chamfer(far, _sphere(0.5), _ring_cameras(16))
    assert res["chamfer_visible"] is None and res["chamfer_visible_points_pred"] == 0
