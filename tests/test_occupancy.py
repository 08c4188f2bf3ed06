"""Occupancy grid: update from an SDF, lookup, ray bounds; SurfaceModel skipping empty space."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.config import BackgroundConfig, ColorConfig, ModelConfig, SamplerConfig, SDFConfig
from lumisurf.models.surface import RenderState, SurfaceModel
from lumisurf.samplers.occupancy import OccupancyGrid
from lumisurf.samplers.occupancy_warp import ray_bounds_warp
from lumisurf.samplers.ray_samplers import near_far_sphere

R = 32  # cells per axis: cell size 1/16 over [-1, 1]


def _sphere(points: Tensor) -> Tensor:  # exact SDF of the sphere |x| = 0.5
    return points.norm(dim=-1) - 0.5


def _threshold(grid: OccupancyGrid, inv_s: float) -> float:
    """Documented rule: half cell diagonal + band / inv_s."""
    return 0.5 * math.sqrt(3) * grid.cell_size + grid.band / inv_s


def _rays_along_x(offsets: list[float]) -> tuple[Tensor, Tensor]:
    """Rays from x = -2 along +x at heights y = offset (z = 0.01)."""
    o = torch.tensor([[-2.0, y, 0.01] for y in offsets])
    return o, torch.tensor([[1.0, 0.0, 0.0]]).expand_as(o).contiguous()


def test_update_marks_a_shell():
    grid = OccupancyGrid(R)
    assert grid.cell_size == 2.0 / R and bool(grid.occupied.all()) and not bool(grid.initialized)
    inv_s = 20.0
    frac = grid.update(_sphere, inv_s)
    centers = grid.cell_centers()
    assert centers.shape == (R**3, 3)
    thr = _threshold(grid, inv_s)
    want = ((centers.norm(dim=-1) - 0.5).abs() <= thr).reshape(R, R, R)
    assert torch.equal(grid.occupied, want) and bool(grid.initialized)
    assert math.isclose(frac, want.float().mean().item(), rel_tol=1e-6) and 0.0 < frac < 0.5
    # index order [x, y, z]: cell (i, j, k) has centre ((i + 0.5) h - 1, ...)
    h = grid.cell_size
    assert torch.allclose(centers.reshape(R, R, R, 3)[3, 20, 7], torch.tensor([3.5 * h - 1, 20.5 * h - 1, 7.5 * h - 1]))
    c = R // 2
    assert not grid.occupied[c, c, c] and not grid.occupied[0, 0, 0] and not grid.occupied[-1, -1, -1]
    assert grid.lookup(torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.5, 0.0], [0.3, 0.3, 0.2449]])).all()
    assert not grid.lookup(torch.tensor([[0.0, 0.0, 0.0], [0.95, 0.95, 0.95], [-0.97, 0.9, -0.99]])).any()


def test_shell_thins_when_inv_s_grows():
    grid = OccupancyGrid(R)
    fractions = [grid.update(_sphere, inv_s) for inv_s in (10.0, 50.0, 1e4)]
    assert fractions[0] > fractions[1] > fractions[2] > 0
    # sharp limit: the cells the surface passes through, a shell about one cell thick
    shell_cells = 4 * math.pi * 0.5**2 / grid.cell_size**2
    assert 0.8 * shell_cells < fractions[2] * R**3 < 2.5 * shell_cells


def test_lookup_outside_the_cube_is_false():
    grid = OccupancyGrid(8)  # fresh: every cell occupied
    inside = torch.tensor([[0.0, 0.0, 0.0], [-1.0, -1.0, -1.0], [0.999, -0.999, 0.5]])
    outside = torch.tensor([[1.0, 0.0, 0.0], [-1.01, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -5.0]])
    assert grid.lookup(inside).all() and not grid.lookup(outside).any()
    assert grid.lookup(torch.zeros(2, 5, 3)).shape == (2, 5)


def test_before_first_update_rays_pass_through():
    grid = OccupancyGrid(R)
    o, d = _rays_along_x([0.0, 0.8, 1.5])
    near, far, hit = near_far_sphere(o, d, 1.0)
    n2, f2, h2 = grid.ray_bounds(o, d, near, far, 64)
    assert torch.equal(n2, near) and torch.equal(f2, far)
    assert h2.tolist() == [True, True, False]


def test_ray_bounds_tighten_around_the_crossings():
    grid = OccupancyGrid(R)
    inv_s, steps = 1e4, 128
    grid.update(_sphere, inv_s)
    o, d = _rays_along_x([0.0, 0.3])
    near, far, _ = near_far_sphere(o, d, 1.0)
    new_near, new_far, hit = grid.ray_bounds(o, d, near, far, steps)
    assert hit.all() and new_near.shape == near.shape == new_far.shape
    # the crossings of |x| = 0.5 lie inside [new_near, new_far] ...
    yz = (o[:, 1:] ** 2).sum(-1, keepdim=True)
    half_chord = torch.sqrt(0.25 - yz)
    t_in, t_out = 2.0 - half_chord, 2.0 + half_chord
    assert (new_near <= t_in).all() and (new_far >= t_out).all()
    # ... and at most a cell (occupied cells reach that far from the surface) + a march step beyond them
    step = (far - near) / steps
    slack = 2 * _threshold(grid, inv_s) + step
    assert (t_in - new_near <= slack).all() and (new_far - t_out <= slack).all()
    assert (new_far - new_near < 0.6 * (far - near)).all()  # much tighter than the unit sphere chord


def test_ray_bounds_contain_every_crossing_of_random_rays():
    grid = OccupancyGrid(R)
    grid.update(_sphere, 1e4)
    gen = torch.Generator().manual_seed(0)
    o = F.normalize(torch.randn(300, 3, generator=gen), dim=-1) * 2.5
    target = (torch.rand(300, 3, generator=gen) * 2 - 1) * 0.6
    d = F.normalize(target - o, dim=-1)
    near, far, _ = near_far_sphere(o, d, 1.0)
    new_near, new_far, hit = grid.ray_bounds(o, d, near, far, 128)
    b = (o * d).sum(-1, keepdim=True)
    disc = b * b - ((o * o).sum(-1, keepdim=True) - 0.25)
    crosses = disc[:, 0] > 1e-3
    assert crosses.sum() > 100 and (~crosses).sum() > 20
    assert hit[crosses].all()
    root = disc.clamp_min(0).sqrt()
    c = crosses
    assert (new_near[c] <= -b[c] - root[c] + 1e-6).all() and (new_far[c] >= -b[c] + root[c] - 1e-6).all()
    assert (new_near >= near).all() and (new_far <= far).all()


def test_ray_missing_the_sphere_is_not_hit():
    grid = OccupancyGrid(R)
    grid.update(_sphere, 1e4)
    o, d = _rays_along_x([0.8, 1.5])  # inside the unit sphere but far from the shell; outside both
    near, far, sphere_hit = near_far_sphere(o, d, 1.0)
    assert sphere_hit.tolist() == [True, False]
    new_near, new_far, hit = grid.ray_bounds(o, d, near, far, 128)
    assert not hit.any()
    assert torch.equal(new_near, near) and torch.equal(new_far, near)  # empty interval


# ---------------------------------------------------------------- SurfaceModel
def _tiny_model(occupancy: bool) -> SurfaceModel:
    torch.manual_seed(0)
    sdf = SDFConfig(hidden=64, layers=3, skip_in=(), multires=0, feature_dim=4, init_radius=0.5)
    model_cfg = ModelConfig(
        sdf=sdf, color=ColorConfig(hidden=16, layers=2, multires_view=1), background=BackgroundConfig(kind="constant")
    )
    sampler = SamplerConfig(
        n_samples=8,
        n_importance=8,
        up_sample_steps=1,
        perturb=False,
        occupancy=occupancy,
        occupancy_resolution=16,
        occupancy_march_steps=32,
    )
    return SurfaceModel(model_cfg, sampler, "constant")


def test_surface_model_skips_rays_that_miss_the_shell():
    model = _tiny_model(occupancy=True)
    assert isinstance(model.occupancy, OccupancyGrid) and model.occupancy.resolution == 16
    frac = model.occupancy.update(model.sdf.sdf, 200.0)  # geometric init: ~ sphere of radius 0.5
    assert 0.0 < frac < 0.5
    o, d = _rays_along_x([0.0, 0.1, 0.2, 0.9, 0.95, 1.5])
    miss = torch.tensor([False, False, False, True, True, True])
    bg = torch.tensor([[0.2, 0.4, 0.6]]).expand(6, 3)
    state = RenderState(cos_anneal_ratio=1.0, perturb=False)
    with torch.no_grad():
        out_on = model(o, d, bg, state, need_grad_graph=False)
        model.occupancy = None
        out_off = model(o, d, bg, state, need_grad_graph=False)
    assert out_on["rgb"].shape == (6, 3) and out_on["opacity"].shape == (6, 1)
    assert torch.equal(out_on["rgb"][miss], bg[miss]) and (out_on["opacity"][miss] == 0).all()
    assert (out_on["depth"][miss] == 0).all() and (out_on["normal"][miss] == 0).all()
    assert (out_on["opacity"][~miss] > 0.5).all()  # rays through the shell still see the surface
    assert (out_off["opacity"][3:5] > 0).all()  # without the grid those two rays reach the field
    # gradients of every evaluated sample (16 a ray): 5 rays in the unit sphere, 3 of them through the shell
    assert out_on["gradients"].shape == (3 * 16, 3) and out_off["gradients"].shape == (5 * 16, 3)
    assert 0 < out_on["samples_per_ray"] < out_off["samples_per_ray"]
    assert math.isclose(out_on["samples_per_ray"].item() / out_off["samples_per_ray"].item(), 3 / 5, rel_tol=1e-6)


def test_surface_model_all_rays_miss():
    model = _tiny_model(occupancy=True)
    model.occupancy.update(model.sdf.sdf, 200.0)
    o, d = _rays_along_x([0.9, 0.95])
    bg = torch.tensor([[1.0, 1.0, 1.0]]).expand(2, 3)
    out = model(o, d, bg, RenderState())
    assert torch.equal(out["rgb"], bg) and (out["opacity"] == 0).all()
    assert out["gradients"].shape[0] == 0 and out["samples_per_ray"] == 0


def test_ray_bounds_kernel_matches_its_torch_twin():
    """The Warp march (one thread per ray) against the plain-torch march: same first/last occupied steps,
    same tightened bounds (a step may differ where a point lies on a cell face to float rounding)."""
    pytest.importorskip("warp")
    torch.manual_seed(0)
    grid = OccupancyGrid(32)
    grid.occupied.copy_(torch.rand(32, 32, 32) < 0.05)
    grid.initialized.fill_(True)
    o = torch.randn(4096, 3)
    o = 2.5 * o / o.norm(dim=-1, keepdim=True)
    d = -o / o.norm(dim=-1, keepdim=True) + 0.3 * torch.randn(4096, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    near, far, _ = near_far_sphere(o, d, 1.0)
    first_k, last_k = ray_bounds_warp(grid.occupied, grid.bound, grid.cell_size, o, d, near, far, 64)
    first_t, last_t = grid.occupied_steps(o, d, near, far, 64)
    assert (first_t >= 0).sum() > 1000 and (first_t < 0).sum() > 100  # hits and misses
    assert (first_k == first_t).float().mean() > 0.999 and (last_k == last_t).float().mean() > 0.999
    kernel = grid.ray_bounds(o, d, near, far, 64)
    twin = grid.ray_bounds(o, d, near, far, 64, kernel=False)
    same = (first_k == first_t) & (last_k == last_t)
    for a, b in zip(kernel, twin):
        assert torch.equal(a[same], b[same])
