"""The plain-torch sparse-voxel renderer: hand-computed values, order invariance, float64 gradients."""

from __future__ import annotations

import math

import pytest
import torch

from lumisurf.voxels.octree import children, voxel_boxes
from lumisurf.voxels.raster_torch import (
    MAX_ALPHA,
    STEP_SCALE,
    corner_weights,
    exp_linear,
    rasterize_reference,
    ray_box,
    voxel_normals,
)


def test_exp_linear_values_and_continuity():
    x = torch.tensor([-10.0, 0.0, 1.1, 2.0], dtype=torch.float64)
    y = exp_linear(x)
    assert y[0].item() == pytest.approx(math.exp(-10 / 1.1 - 1 + math.log(1.1)))
    assert y[2].item() == pytest.approx(1.1) and y[3].item() == 2.0
    assert exp_linear(torch.tensor(1.1 - 1e-9, dtype=torch.float64)).item() == pytest.approx(1.1, abs=1e-8)


def test_trilinear_weights_corners_and_sum():
    u = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.3, 0.6, 0.2]])
    w = corner_weights(u)
    assert w[0, 0] == 1 and w[1, 5] == 1  # corner 4*1 + 2*0 + 1 = 5
    assert torch.allclose(w.sum(-1), torch.ones(3))


def test_ray_box_hand_values():
    o = torch.tensor([[-2.0, 0.5, 0.5], [-2.0, 3.0, 0.5], [0.5, 0.5, 0.5]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a, b = ray_box(o, d, torch.zeros(1, 3), torch.ones(1, 3))
    assert (a[0, 0].item(), b[0, 0].item()) == (2.0, 3.0)
    assert b[1, 0] <= a[1, 0]  # miss
    assert (a[2, 0].item(), b[2, 0].item()) == (0.0, 0.5)  # starts inside: entry clamped to 0


def _unit_voxel(value: float):
    lo, size = torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    return lo, size, torch.full((1, 8), value, dtype=torch.float64)


def test_one_voxel_density_hand_value():
    lo, size, corners = _unit_voxel(-3.0)
    o = torch.tensor([[-1.0, 0.5, 0.5]], dtype=torch.float64)
    d = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    rgb, bg = torch.tensor([[0.2, 0.4, 0.6]], dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    out = rasterize_reference(o, d, lo, size, corners, rgb, bg, n_samples=3)
    alpha = 1 - math.exp(-STEP_SCALE * 1.0 * math.exp(-3 / 1.1 - 1 + math.log(1.1)))
    assert out["opacity"].item() == pytest.approx(min(alpha, MAX_ALPHA))
    assert torch.allclose(out["rgb"], rgb * alpha + (1 - alpha) * bg)
    assert out["depth"].item() == pytest.approx(alpha * 1.5)  # entry 1, exit 2
    assert out["max_weight"].item() == pytest.approx(alpha)


def test_one_voxel_sdf_plane_hand_value():
    # SDF = x - 0.5 inside the unit voxel: corners with x = 0 hold -0.5, with x = 1 hold +0.5
    lo, size, _ = _unit_voxel(0.0)
    corners = torch.tensor([[-0.5] * 4 + [0.5] * 4], dtype=torch.float64)
    o = torch.tensor([[2.0, 0.5, 0.5]], dtype=torch.float64)  # from outside (+x) looking at -x
    d = torch.tensor([[-1.0, 0.0, 0.0]], dtype=torch.float64)
    s = 10.0
    out = rasterize_reference(
        o,
        d,
        lo,
        size,
        corners,
        torch.zeros(1, 3, dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
        mode="sdf",
        inv_s=s,
    )
    phi = lambda x: 1 / (1 + math.exp(-s * x))  # noqa: E731
    expect = (phi(0.5) - phi(-0.5) + 1e-5) / (phi(0.5) + 1e-5)
    assert out["opacity"].item() == pytest.approx(expect)
    assert torch.allclose(voxel_normals(corners, "sdf"), torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(out["normal"], expect * torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))


def _scene(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    path, level = children(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    kp, kl = children(path[:3], level[:3])  # mixed levels: 5 level-1 leaves, 24 level-2 leaves
    path, level = torch.cat([path[3:], kp]), torch.cat([level[3:], kl])
    c, size = voxel_boxes(path, level, torch.full((3,), -1.0, dtype=dtype), 2.0)
    lo = c - size[:, None] / 2
    corners = torch.randn(len(path), 8, generator=g, dtype=dtype) * 2 - 4
    rgb = torch.rand(len(path), 3, generator=g, dtype=dtype)
    o = torch.randn(6, 3, generator=g, dtype=dtype) * 0.1 + torch.tensor([2.5, 1.5, 2.0], dtype=dtype)
    d = torch.nn.functional.normalize(torch.rand(6, 3, generator=g, dtype=dtype) - 0.5 - o / 3, dim=-1)
    return o, d, lo, size, corners, rgb


@pytest.mark.parametrize("mode", ["density", "sdf"])
def test_voxel_order_does_not_matter(mode):
    o, d, lo, size, corners, rgb = _scene(0)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    ref = rasterize_reference(o, d, lo, size, corners, rgb, bg, mode=mode)
    perm = torch.randperm(len(lo), generator=torch.Generator().manual_seed(3))
    out = rasterize_reference(o, d, lo[perm], size[perm], corners[perm], rgb[perm], bg, mode=mode)
    for k in ("rgb", "opacity", "depth", "normal"):
        assert torch.allclose(out[k], ref[k])
    assert torch.allclose(out["max_weight"], ref["max_weight"][perm])
    assert (ref["opacity"] > 0.05).any()  # the rays do cross geometry


@pytest.mark.parametrize("mode,n_samples", [("density", 1), ("density", 3), ("sdf", 1)])
def test_gradcheck_float64(mode, n_samples):
    o, d, lo, size, corners, rgb = _scene(1)
    corners = corners if mode == "density" else corners / 4 + 0.5
    bg = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)

    def f(c, col):
        out = rasterize_reference(o[:3], d[:3], lo, size, c, col, bg, mode=mode, inv_s=8.0, n_samples=n_samples)
        return out["rgb"], out["depth"]

    assert torch.autograd.gradcheck(f, (corners.clone().requires_grad_(), rgb.clone().requires_grad_()))


def test_distortion_hand_value_and_gradient():
    """Two segments: w = (0.5, 0.25) at midpoints 1 and 3, lengths 0.2 and 0.4:
    2 * 0.5 * 0.25 * 2 + (0.25 * 0.2 + 0.0625 * 0.4) / 3 = 0.5 + 0.025 = 0.525; an empty third segment
    far away changes nothing."""
    from lumisurf.voxels.raster_torch import distortion

    w = torch.tensor([[0.5, 0.25, 0.0]], dtype=torch.float64, requires_grad=True)
    mid = torch.tensor([[1.0, 3.0, 1e6]], dtype=torch.float64)
    seg = torch.tensor([[0.2, 0.4, 0.0]], dtype=torch.float64)
    assert torch.isclose(distortion(w, mid, seg), torch.tensor([[0.525]], dtype=torch.float64)).all()
    assert torch.autograd.gradcheck(
        lambda x: distortion(x, mid[:, :2], seg[:, :2]), (w[:, :2].detach().clone().requires_grad_(),)
    )
