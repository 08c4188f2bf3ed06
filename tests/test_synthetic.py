"""The built-in synthetic scene: analytic SDF, cameras, sphere-traced renders, GT normals and mesh."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lumisurf.data import synthetic as S
from lumisurf.data.synthetic import make_synthetic_scene, synthetic_sdf


@pytest.fixture(scope="module")
def scene():
    return make_synthetic_scene(n_train=8, n_test=4, resolution=48, seed=3)


def test_sdf_known_points():
    zc, r = S.SPHERE_CENTER[2], S.SPHERE_RADIUS
    tz, big, small = S.TORUS_CENTER[2], S.TORUS_MAJOR, S.TORUS_MINOR
    pts = torch.tensor(
        [
            [0.0, 0.0, zc + r],  # top of the sphere: on the surface
            [0.0, 0.0, zc + r + 0.1],  # 0.1 above it
            [big + small, 0.0, tz],  # outer equator of the torus (x is the tilt axis)
            [big + small + 0.1, 0.0, tz],  # 0.1 outside it
            [-(big + small + 0.05), 0.0, tz],
        ]
    )  # 0.05 outside, other side
    expected = torch.tensor([0.0, 0.1, 0.0, 0.1, 0.05])
    assert torch.allclose(synthetic_sdf(pts), expected, atol=1e-6)
    assert synthetic_sdf(torch.tensor([[0.0, 0.0, zc]])).item() == pytest.approx(-r, abs=1e-6)  # sphere centre
    # torus tube centre: a point on the tilted core circle, at local angle 90 deg (+y local)
    a = math.radians(S.TORUS_TILT_DEG)
    core = torch.tensor([[0.0, big * math.cos(a), tz + big * math.sin(a)]])
    assert S.torus_sdf(core).item() == pytest.approx(-small, abs=1e-6)


def test_smooth_min_values_and_lipschitz():
    k = 0.2
    a, b = torch.tensor([0.0, 0.0, 1.0, 0.3]), torch.tensor([0.0, 0.5, 0.0, 0.3 + 0.1])
    # a = b: min - k/4; |a - b| >= k: plain min; |a-b| = k/2: h = 0.25 -> 0.3 + 0.25*(-0.1) - k*0.25*0.75
    exp = torch.tensor([-k / 4, 0.0, 0.0, 0.3 + 0.1 - 0.75 * 0.1 - k * 0.75 * 0.25])
    assert torch.allclose(S.smooth_min(a, b, k), exp, atol=1e-7)
    g = torch.Generator().manual_seed(0)
    p, q = torch.rand(4000, 3, generator=g) * 2 - 1, torch.rand(4000, 3, generator=g) * 2 - 1
    lip = (synthetic_sdf(p) - synthetic_sdf(q)).abs() / (p - q).norm(dim=-1)
    assert lip.max() <= 1.0 + 1e-5  # 1-Lipschitz: a true distance bound, safe for sphere tracing


def test_sdf_gradcheck_and_unit_gradient():
    p = torch.tensor([[0.3, -0.2, 0.4], [0.55, 0.1, -0.2], [0.1, 0.33, -0.05]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(synthetic_sdf, (p,))
    far = torch.tensor([[0.0, 0.0, 0.9], [0.9, 0.0, -0.16]])  # away from the blend: exact SDF parts
    assert torch.allclose(S.sdf_normals(far).norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(S.sdf_normals(far)[0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)


def test_shapes_and_metadata(scene):
    tr, te = scene.split("train"), scene.split("test")
    assert (len(tr), len(te)) == (8, 4)
    assert tr.images.shape == (8, 48, 48, 3) and tr.masks.shape == (8, 48, 48)
    assert te.normals.shape == (4, 48, 48, 3) and tr.normals is None
    assert tr.images.dtype == torch.float32 and float(tr.images.min()) >= 0 and float(tr.images.max()) <= 1
    assert scene.format == "synthetic" and scene.name == "synthetic" and str(scene.root) == "<builtin>"
    assert scene.normalization is None and not scene.normalized
    assert (tr.masks.flatten(1).sum(1) > 20).all()  # every view sees the object
    assert len(tr.files) == 8


def test_cameras_look_at_origin(scene):
    cams = scene.split("train").cameras
    dist = cams.centers.norm(dim=-1)
    assert ((dist > 2.8 - 1e-4) & (dist < 3.2 + 1e-4)).all()
    assert torch.allclose(cams.fx, torch.full((8,), 24.0 / math.tan(math.radians(20.0))))
    assert torch.allclose(cams.cx, torch.full((8,), 24.0))
    rot = cams.c2w[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(8, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(8), atol=1e-5)
    uv, z = cams.project(torch.zeros(1, 3), 0)  # the origin lands on the image centre
    assert torch.allclose(uv[0], torch.tensor([24.0, 24.0]), atol=1e-3) and z[0] > 0
    assert (cams.c2w[:, 2, 1] < 0).all()  # image "down" (OpenCV +y) points down in the world (-z)


def _march_hits(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Independent hit test: dense fixed steps along the ray, look for a negative SDF."""
    t = torch.linspace(1.5, 4.5, 3000)
    p = o[:, None] + t[None, :, None] * d[:, None]
    return (synthetic_sdf(p.reshape(-1, 3)).reshape(len(o), -1) < 0).any(-1)


def test_masks_match_the_sdf(scene):
    tr = scene.split("train")
    cams, n = tr.cameras, len(tr)
    idx = torch.arange(n)
    # centre pixel (24, 24) and a corner pixel (0, 0) through their pixel centres
    for row, col in ((24, 24), (0, 0), (10, 37)):
        o, d = cams.rays(idx, torch.full((n,), col + 0.5), torch.full((n,), row + 0.5))
        hits = _march_hits(o, d)
        m = tr.masks[:, row, col]
        assert torch.all(m[hits] > 0.2) and torch.all(m[~hits] < 0.8), (row, col)
    assert torch.all(tr.masks[:, 24, 24] == 1.0)  # the object covers the origin in every view
    vals = torch.unique(tr.masks)
    assert set(torch.round(vals * 4).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}  # 2x2 coverage levels
    assert ((vals > 0) & (vals < 1)).any()  # anti-aliased silhouettes


def test_gt_normals(scene):
    te = scene.split("test")
    fg = te.masks > 0
    nrm = te.normals
    assert torch.allclose(nrm[fg].norm(dim=-1), torch.ones(int(fg.sum())), atol=1e-4)
    assert torch.all(nrm[~fg] == 0)
    # normals face the camera at the centre pixel and equal the SDF gradient at the hit point
    cams = te.cameras
    o, d = cams.rays(torch.arange(4), torch.full((4,), 24.25), torch.full((4,), 24.25))
    hit, t = S.trace_scene(o, d)
    assert hit.all()
    p = o + t[:, None] * d
    assert synthetic_sdf(p).abs().max() < 1e-3
    n_fd = torch.stack([(synthetic_sdf(p + e * 1e-3) - synthetic_sdf(p - e * 1e-3)) / 2e-3 for e in torch.eye(3)], -1)
    n_fd = n_fd / n_fd.norm(dim=-1, keepdim=True)
    assert ((n_fd * -d).sum(-1) > 0).all()
    assert ((nrm[:, 24, 24] * n_fd).sum(-1) > 0.95).all()  # 2x2 mean near the pixel centre


def test_determinism():
    a = make_synthetic_scene(n_train=3, n_test=1, resolution=24, seed=7)
    b = make_synthetic_scene(n_train=3, n_test=1, resolution=24, seed=7)
    c = make_synthetic_scene(n_train=3, n_test=1, resolution=24, seed=8)
    for k in ("train", "test"):
        assert torch.equal(a.split(k).images, b.split(k).images)
        assert torch.equal(a.split(k).cameras.c2w, b.split(k).cameras.c2w)
    assert not torch.equal(a.split("train").cameras.c2w, c.split("train").cameras.c2w)


def test_gt_mesh(scene):
    mesh = scene.gt_mesh
    assert mesh.is_watertight and mesh.volume > 0
    v = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    assert v.norm(dim=-1).max() < S.BOUND_RADIUS
    assert synthetic_sdf(v).abs().max() < 2 * S.BOUND_RADIUS / 127  # within a grid cell of the surface
    # volume close to the analytic parts' (sphere + torus - overlap, smooth fill): coarse bound
    parts = 4 / 3 * math.pi * S.SPHERE_RADIUS**3 + 2 * math.pi**2 * S.TORUS_MAJOR * S.TORUS_MINOR**2
    assert 0.7 * parts < mesh.volume < 1.2 * parts


def test_srgb_encoding():
    x = torch.tensor([0.0, 0.002, 0.5, 1.0, 2.0])
    exp = torch.tensor([0.0, 0.002 * 12.92, 1.055 * 0.5 ** (1 / 2.4) - 0.055, 1.0, 1.0])
    assert torch.allclose(S.linear_to_srgb(x), exp, atol=1e-6)
