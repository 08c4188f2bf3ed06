"""Image-space depth losses: hand values on a plane seen head-on and at an angle."""

from __future__ import annotations

import torch

from lumisurf.losses.depth import depth_l1, depth_normals, normal_consistency, ray_depth


def _plane_view(h: int = 6, w: int = 7):
    """Pinhole rays (OpenCV: x right, y down, +z forward) from the origin to the plane z = 2."""
    ar = lambda n: torch.arange(n, dtype=torch.float64) - n / 2 + 0.5  # noqa: E731
    ys, xs = torch.meshgrid(ar(h), ar(w), indexing="ij")
    d = torch.stack([xs * 0.1, ys * 0.1, torch.ones_like(xs)], -1)
    d = d / d.norm(dim=-1, keepdim=True)
    t = 2.0 / d[..., 2]
    return d.double(), t.double()


def test_ray_depth_of_a_plane():
    d, t = _plane_view()
    z = torch.full(t.shape, 2.0, dtype=torch.float64)
    assert torch.allclose(ray_depth(z, d, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)), t)


def test_depth_normals_of_a_plane_face_the_camera():
    d, t = _plane_view()
    n, ok = depth_normals(d * t[..., None], d, torch.ones(t.shape, dtype=torch.bool))
    assert ok.sum() == (6 - 2) * (7 - 2) and not ok[0].any() and not ok[:, -1].any()
    assert torch.allclose(n[ok], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).expand(int(ok.sum()), 3))
    tilted = d * (t / (1.0 + 0.5 * d[..., 0] / d[..., 2]))[..., None]  # the plane z + 0.5 x = 2
    n2, _ = depth_normals(tilted, d, torch.ones(t.shape, dtype=torch.bool))
    want = -torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64) / 1.25**0.5
    assert torch.allclose(n2[ok], want.expand(int(ok.sum()), 3))
    hole = torch.ones(t.shape, dtype=torch.bool)
    hole[3, 3] = False
    _, ok3 = depth_normals(d * t[..., None], d, hole)
    assert not ok3[3, 3] and not ok3[2, 3] and not ok3[3, 2] and ok3[1, 1]


def test_normal_consistency_and_depth_l1_by_hand():
    a = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    assert torch.isclose(normal_consistency(a, b, torch.ones(1, 2, dtype=torch.bool)), torch.tensor(0.5))
    assert normal_consistency(a, b, torch.zeros(1, 2, dtype=torch.bool)) == 0
    assert torch.isclose(depth_l1(torch.tensor([1.0, 2.0, 9.0]), torch.tensor([1.5, 1.0, 0.0])), torch.tensor(0.75))
