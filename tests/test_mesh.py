"""Tests for lumisurf.mesh: SDF grid evaluation, marching cubes, component filtering, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from lumisurf.data.scene import Normalization
from lumisurf.errors import LumisurfError
from lumisurf.eval.geometry_metrics import load_mesh
from lumisurf.mesh import evaluate_sdf_grid, extract_mesh, mesh_to_normalized, mesh_to_world, save_mesh

CENTRE = torch.tensor([0.1, -0.05, 0.2])
RADIUS = 0.5


def sphere_sdf(x: torch.Tensor, centre=CENTRE, radius=RADIUS) -> torch.Tensor:
    return (x - centre.to(x)).norm(dim=-1) - radius  # [N]


@pytest.fixture(scope="module")
def sphere_mesh() -> trimesh.Trimesh:
    return extract_mesh(sphere_sdf, resolution=128)


def test_grid_is_xyz_indexed_and_spans_bound():
    r, b = 5, 0.8
    grid = evaluate_sdf_grid(lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2], r, bound=b, chunk=7)
    assert grid.shape == (r, r, r) and grid.dtype == np.float32
    c = np.linspace(-b, b, r)
    expect = c[:, None, None] + 10 * c[None, :, None] + 100 * c[None, None, :]
    np.testing.assert_allclose(grid, expect, atol=1e-4)


def test_grid_accepts_n_by_1_outputs_and_module_device():
    lin = torch.nn.Linear(3, 1)  # device taken from its parameters (CPU here)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        lin.bias.zero_()
    grid = evaluate_sdf_grid(lin, 4, bound=1.0)
    np.testing.assert_allclose(grid[:, 0, 0], np.linspace(-1, 1, 4), atol=1e-6)
    assert torch.is_grad_enabled()


def test_sphere_radius_and_watertight(sphere_mesh):
    d = np.linalg.norm(sphere_mesh.vertices - CENTRE.numpy(), axis=1)
    assert abs(d.mean() - RADIUS) < 0.01 * RADIUS
    assert np.abs(d - RADIUS).max() < 2.0 / 127  # within one voxel everywhere
    assert sphere_mesh.is_watertight
    assert sphere_mesh.volume > 0  # consistent outward winding gives a positive volume
    assert abs(sphere_mesh.volume - 4 / 3 * np.pi * RADIUS**3) < 0.02 * 4 / 3 * np.pi * RADIUS**3


def test_sphere_normals_point_outward(sphere_mesh):
    out = sphere_mesh.triangles_center - CENTRE.numpy()
    dots = (sphere_mesh.face_normals * out).sum(-1)
    assert (dots > 0).mean() > 0.99


def test_keep_largest_drops_small_component():
    small_c = torch.tensor([0.75, 0.75, 0.75])

    def two_spheres(x):
        return torch.minimum(sphere_sdf(x), sphere_sdf(x, small_c, 0.1))

    both = extract_mesh(two_spheres, resolution=64, keep_largest=False)
    assert len(both.split(only_watertight=False)) == 2
    big = extract_mesh(two_spheres, resolution=64, keep_largest=True)
    d = np.linalg.norm(big.vertices - CENTRE.numpy(), axis=1)
    assert np.all(np.abs(d - RADIUS) < 0.05)
    assert len(big.faces) < len(both.faces) and big.is_watertight


def test_empty_level_set_raises():
    with pytest.raises(LumisurfError, match="never crosses"):
        extract_mesh(lambda x: torch.ones(x.shape[0]), resolution=16)
    with pytest.raises(LumisurfError, match="NaN"):
        extract_mesh(lambda x: torch.full((x.shape[0],), float("nan")), resolution=8)


def test_plane_vertices_at_x():
    mesh = extract_mesh(lambda x: x[:, 0] - 0.3, resolution=32, bound=1.0)
    np.testing.assert_allclose(mesh.vertices[:, 0], 0.3, atol=1e-5)
    assert np.ptp(mesh.vertices[:, 1]) > 1.9 and np.ptp(mesh.vertices[:, 2]) > 1.9
    # SDF grows with +x, so outward normals point to +x
    assert np.all(mesh.face_normals[:, 0] > 0.99)


def test_mesh_to_world_round_trip(sphere_mesh):
    norm = Normalization(center=(1.0, -2.0, 3.0), scale=2.5)
    world = mesh_to_world(sphere_mesh, norm)
    np.testing.assert_allclose(world.vertices, sphere_mesh.vertices * 2.5 + np.array([1.0, -2.0, 3.0]))
    assert np.isclose(world.volume, sphere_mesh.volume * 2.5**3)
    back = mesh_to_normalized(world, norm)
    np.testing.assert_allclose(back.vertices, sphere_mesh.vertices, atol=1e-12)
    assert np.array_equal(world.faces, sphere_mesh.faces)


def test_save_mesh_formats_and_overwrite(tmp_path, sphere_mesh):
    ply = save_mesh(sphere_mesh, tmp_path / "sub" / "m.ply")
    assert ply.read_bytes()[:3] == b"ply" and b"binary_little_endian" in ply.read_bytes()[:200]
    loaded = load_mesh(ply)
    np.testing.assert_allclose(loaded.vertices, sphere_mesh.vertices, atol=1e-6)
    assert len(loaded.faces) == len(sphere_mesh.faces)
    with pytest.raises(LumisurfError, match="m.ply"):
        save_mesh(sphere_mesh, ply)
    assert save_mesh(sphere_mesh, ply, force=True) == ply
    obj = save_mesh(sphere_mesh, tmp_path / "m.obj")
    assert len(load_mesh(obj).faces) == len(sphere_mesh.faces)
    with pytest.raises(LumisurfError, match="unsupported"):
        save_mesh(sphere_mesh, tmp_path / "m.stl")


def test_fill_cavities_closes_a_void_inside_a_shell():
    from lumisurf.mesh.marching_cubes import fill_cavities

    shell = lambda p: torch.maximum(p.norm(dim=-1) - 0.8, 0.3 - p.norm(dim=-1))  # noqa: E731  hollow ball
    grid = evaluate_sdf_grid(shell, 64)
    filled, n = fill_cavities(grid)
    ball = (
        (
            torch.linspace(-1, 1, 64)[:, None, None] ** 2
            + torch.linspace(-1, 1, 64)[None, :, None] ** 2
            + torch.linspace(-1, 1, 64)[None, None] ** 2
        )
        .sqrt()
        .numpy()
    )
    assert n == int((ball < 0.3).sum()) and (filled[ball < 0.3] < 0).all()  # the void became inside
    assert np.array_equal(filled[ball >= 0.3], grid[ball >= 0.3])  # nothing else changed
    both = extract_mesh(shell, 64, keep_largest=False)
    outer = extract_mesh(shell, 64, keep_largest=False, fill_voids=True)
    assert both.area == pytest.approx(4 * np.pi * (0.8**2 + 0.3**2), rel=0.05)
    assert outer.area == pytest.approx(4 * np.pi * 0.8**2, rel=0.05) and outer.is_watertight
    assert fill_cavities(evaluate_sdf_grid(lambda p: p.norm(dim=-1) - 0.5, 32))[1] == 0  # no void, no change
