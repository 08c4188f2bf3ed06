"""Tile-binned sparse-voxel rendering against the brute-force reference: values and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumisurf.data.synthetic import look_at_cameras
from lumisurf.voxels.binning import bin_voxels, screen_boxes
from lumisurf.voxels.raster import rasterize_tiles_torch
from lumisurf.voxels.raster_torch import rasterize_reference
from lumisurf.voxels.structure import VoxelOctree

W, H = 40, 36  # partial tiles on both axes


def _scene(seed: int, mode: str):
    g = torch.Generator().manual_seed(seed)
    tree = VoxelOctree.dense(1, torch.full((3,), -1.0), 2.0)
    tree, _ = tree.subdivide(torch.rand(len(tree), generator=g) < 0.5)
    tree, _ = tree.subdivide(torch.rand(len(tree), generator=g) < 0.15)
    lo, size = tree.boxes()
    lo, size = lo.double(), size.double()
    if mode == "density":
        corners = torch.randn(len(tree), 8, generator=g, dtype=torch.float64) * 3 - 5
    else:  # a sphere-ish SDF plus noise
        c = lo[:, None] + size[:, None, None] * torch.tensor(
            [[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], dtype=torch.float64
        )
        corners = c.norm(dim=-1) - 0.6 + 0.05 * torch.randn(len(tree), 8, generator=g, dtype=torch.float64)
    rgb = torch.rand(len(tree), 3, generator=g, dtype=torch.float64)
    return tree, lo, size, corners, rgb


def _view(eye):
    cams = look_at_cameras(np.array([eye]), W, H, fov_deg=60.0)
    o, d, _, _ = cams.pixel_rays(0)
    c2w = cams.c2w[0].double()
    return cams, o.double(), d.double(), c2w


@pytest.mark.parametrize(
    "mode,eye", [("density", [2.2, 1.3, 1.1]), ("sdf", [-1.9, 2.0, -0.8]), ("density", [0.31, 0.22, 0.13])]
)  # the last camera sits inside a voxel
def test_tiles_match_brute_force_values_and_gradients(mode, eye):
    tree, lo, size, corners, rgb = _scene(0, mode)
    cams, o, d, c2w = _view(eye)
    binned = bin_voxels(
        tree.path, lo, size, c2w, float(cams.fx[0]), float(cams.fy[0]), float(cams.cx[0]), float(cams.cy[0]), W, H
    )
    bg = torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64)
    c1, r1 = corners.clone().requires_grad_(), rgb.clone().requires_grad_()
    c2, r2 = corners.clone().requires_grad_(), rgb.clone().requires_grad_()
    p1, p2 = (torch.ones(len(lo), dtype=torch.float64, requires_grad=True) for _ in range(2))
    fast = rasterize_tiles_torch(
        binned, o, d, lo, size, c1, r1, bg, W, H, mode=mode, inv_s=10.0, n_samples=2, priority=p1
    )
    ref = rasterize_reference(o, d, lo, size, c2, r2, bg, mode=mode, inv_s=10.0, n_samples=2, priority=p2)
    for k in ("rgb", "opacity", "depth", "normal", "distortion", "max_weight"):
        assert torch.allclose(fast[k], ref[k], atol=1e-10), k
    assert ref["opacity"].max() > 0.5 and ref["opacity"].min() < 0.5  # both covered and empty pixels
    g = torch.Generator().manual_seed(1)
    weights = {
        k: torch.randn(ref[k].shape, generator=g, dtype=torch.float64)
        for k in ("rgb", "opacity", "depth", "normal", "distortion")
    }
    sum(((fast[k] * w).sum() for k, w in weights.items())).backward()
    sum(((ref[k] * w).sum() for k, w in weights.items())).backward()
    assert torch.allclose(c1.grad, c2.grad, atol=1e-9) and torch.allclose(r1.grad, r2.grad, atol=1e-9)
    assert torch.allclose(p1.grad, p2.grad, atol=1e-9) and p2.grad.max() > 0  # subdivision priority


def test_screen_boxes_cover_the_projection():
    tree, lo, size, _, _ = _scene(1, "density")
    cams, _, _, c2w = _view([2.2, 1.3, 1.1])
    box = screen_boxes(lo, size, c2w, float(cams.fx[0]), float(cams.fy[0]), float(cams.cx[0]), float(cams.cy[0]), W, H)
    assert (box[:, 0] >= 0).all() and (box[:, 1] <= W).all() and (box[:, 2] >= 0).all() and (box[:, 3] <= H).all()
    behind = screen_boxes(
        lo,
        size,
        c2w @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)),
        float(cams.fx[0]),
        float(cams.fy[0]),
        float(cams.cx[0]),
        float(cams.cy[0]),
        W,
        H,
    )
    assert (behind[:, 1] <= behind[:, 0]).all()  # camera turned away: nothing covered


@pytest.mark.parametrize(
    "mode,eye,n_samples",
    [("density", [2.2, 1.3, 1.1], 1), ("density", [0.31, 0.22, 0.13], 3), ("sdf", [-1.9, 2.0, -0.8], 1)],
)
def test_warp_matches_the_torch_twin_forward_and_backward(mode, eye, n_samples):
    from lumisurf.voxels import raster_warp
    from lumisurf.voxels.raster import rasterize_tiles

    if raster_warp.unavailable([torch.zeros(1)]):
        pytest.skip(f"warp not usable: {raster_warp.unavailable([torch.zeros(1)])}")
    tree, lo, size, corners, rgb = _scene(2, mode)
    cams, o, d, c2w = _view(eye)
    f = lambda t: t.float()  # noqa: E731
    binned = bin_voxels(
        tree.path,
        f(lo),
        f(size),
        f(c2w),
        float(cams.fx[0]),
        float(cams.fy[0]),
        float(cams.cx[0]),
        float(cams.cy[0]),
        W,
        H,
    )
    bg = torch.tensor([0.3, 0.6, 0.9])
    results, grads = [], []
    for backend, dt in (("warp", torch.float32), ("torch", torch.float64)):
        c = corners.float().to(dt).requires_grad_()
        r = rgb.float().to(dt).requires_grad_()
        s = torch.tensor(10.0, dtype=dt, requires_grad=True)
        prio = torch.ones(len(lo), dtype=dt, requires_grad=True)
        out = rasterize_tiles(
            binned,
            f(o).to(dt),
            f(d).to(dt),
            f(lo).to(dt),
            f(size).to(dt),
            c,
            r,
            bg.to(dt),
            W,
            H,
            mode=mode,
            inv_s=s,
            n_samples=n_samples,
            backend=backend,
            stop_t=0.0,
            priority=prio,
        )
        g = torch.Generator().manual_seed(1)
        loss = sum(
            (out[k].double() * torch.randn(out[k].shape, generator=g, dtype=torch.float64)).sum()
            for k in ("rgb", "opacity", "depth", "normal", "distortion")
        )
        loss.backward()
        results.append(out)
        grads.append((c.grad, r.grad, prio.grad, s.grad if mode == "sdf" else torch.zeros((), dtype=dt)))
    close = lambda a, b: (a.double() - b).abs().max() <= 1e-5 * b.abs().max()  # noqa: E731  float32 vs float64
    for k in ("rgb", "opacity", "depth", "normal", "distortion", "max_weight"):
        assert close(results[0][k].detach(), results[1][k].detach()), k
    for a, b in zip(grads[0], grads[1]):
        assert close(a, b)
    med_w, med_t = results[0]["median_depth"].double(), results[1]["median_depth"]
    assert ((med_w - med_t).abs() < 1e-5).double().mean() > 0.99  # float32 may cross one half one segment apart
    assert (med_t > 0).any() and torch.equal(med_t > 0, results[1]["opacity"].detach() > 0.5)


@pytest.mark.parametrize("eye", [[2.2, 1.3, 1.1], [0.31, 0.22, 0.13], [-0.2, 3.0, -1.5]])
def test_warp_binning_equals_torch_binning(eye):
    from lumisurf.voxels import binning_warp

    if binning_warp.unavailable(torch.zeros(1)):
        pytest.skip(f"warp not usable: {binning_warp.unavailable(torch.zeros(1))}")
    tree, lo, size, _, _ = _scene(3, "density")
    cams, _, _, c2w = _view(eye)
    args = (
        tree.path,
        lo.float(),
        size.float(),
        c2w.float(),
        float(cams.fx[0]),
        float(cams.fy[0]),
        float(cams.cx[0]),
        float(cams.cy[0]),
        W,
        H,
    )
    ref, fast = bin_voxels(*args, backend="torch"), bin_voxels(*args, backend="warp")
    for k in ("voxel", "octant", "tile_start", "bbox"):
        assert torch.equal(getattr(fast, k), getattr(ref, k)), k


def test_warp_split_over_threads_matches_one_thread():
    """The CPU launch split into interleaved tile sets on two threads gives the one-thread results (max weight
    exactly; gradients summed in another order)."""
    from lumisurf.voxels import raster_warp
    from lumisurf.voxels.raster import rasterize_tiles

    if raster_warp.unavailable([torch.zeros(1)]):
        pytest.skip(f"warp not usable: {raster_warp.unavailable([torch.zeros(1)])}")
    tree, lo, size, corners, rgb = (
        t.float() if torch.is_tensor(t) and t.is_floating_point() else t for t in _scene(3, "density")
    )
    cams, o, d, c2w = _view([2.2, 1.3, 1.1])
    binned = bin_voxels(
        tree.path,
        lo,
        size,
        c2w.float(),
        float(cams.fx[0]),
        float(cams.fy[0]),
        float(cams.cx[0]),
        float(cams.cy[0]),
        W,
        H,
    )
    threads, results = torch.get_num_threads(), []
    try:
        for n in (1, 2, 2):  # the second 2-thread call runs concurrently (the first loads the module)
            torch.set_num_threads(n)
            c = corners.clone().requires_grad_()
            out = rasterize_tiles(binned, o.float(), d.float(), lo, size, c, rgb, torch.ones(3), W, H, backend="warp")
            (out["rgb"].sum() + out["depth"].sum()).backward()
            results.append((out, c.grad))
    finally:
        torch.set_num_threads(threads)
    for out, grad in results[1:]:
        for k in ("rgb", "opacity", "depth", "max_weight", "median_depth"):
            assert torch.equal(out[k], results[0][0][k]), k
        assert torch.allclose(grad, results[0][1], rtol=1e-5, atol=1e-6)
