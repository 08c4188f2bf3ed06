"""Unseen-space filling before marching cubes (lumisurf.mesh.visibility) on analytic SDF grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lumisurf.data.synthetic import look_at_cameras
from lumisurf.mesh.marching_cubes import extract_mesh
from lumisurf.mesh.visibility import blocked_towards, fill_unseen, sample_grid, unseen_outside

R = 64
AXIS = np.linspace(-1.0, 1.0, R)
X, Y, Z = np.meshgrid(AXIS, AXIS, AXIS, indexing="ij")


def sphere(r: float = 0.6) -> np.ndarray:
    return (np.sqrt(X**2 + Y**2 + Z**2) - r).astype(np.float32)


def pocket(r_out: float = 0.6, r_in: float = 0.25, tunnel: float = 0.0) -> np.ndarray:
    """A ball with a spherical pocket at its centre, opened downwards (-z) by a tunnel of radius ``tunnel``."""
    sdf = np.maximum(sphere(r_out), -sphere(r_in))
    if tunnel > 0:
        cyl = np.sqrt(X**2 + Y**2) - tunnel
        cyl = np.where(Z < 0, cyl, np.sqrt(X**2 + Y**2 + Z**2) - tunnel)  # capped at the centre
        sdf = np.maximum(sdf, -cyl)
    return sdf.astype(np.float32)


def ring_cameras(elevations_deg, n_azimuth: int = 12, dist: float = 3.0):
    eyes = []
    for el in elevations_deg:
        for k in range(n_azimuth):
            az = 2 * math.pi * (k + 0.5) / n_azimuth
            e = math.radians(el)
            eyes.append([dist * math.cos(e) * math.cos(az), dist * math.cos(e) * math.sin(az), dist * math.sin(e)])
    return look_at_cameras(np.array(eyes), 64, 64, fov_deg=40.0)


def test_sample_grid_reads_axis_order():
    g = torch.from_numpy((X + 2 * Y + 3 * Z).astype(np.float32))  # linear: trilinear is exact
    p = torch.tensor([[0.3, -0.2, 0.5], [-0.9, 0.1, 0.0]])
    expect = p[:, 0] + 2 * p[:, 1] + 3 * p[:, 2]
    assert torch.allclose(sample_grid(g, p, 1.0), expect, atol=1e-5)


def test_blocked_towards_a_sphere():
    g = torch.from_numpy(sphere(0.5))
    pts = torch.tensor([[0.0, 0.0, 0.8], [0.0, 0.0, 0.8]])
    far_side = torch.tensor([0.0, 0.0, -3.0])  # through the ball
    same_side = torch.tensor([0.0, 0.0, 3.0])
    assert blocked_towards(g, pts[:1], far_side, 1.0, 0.0).tolist() == [True]
    assert blocked_towards(g, pts[:1], same_side, 1.0, 0.0).tolist() == [False]
    assert blocked_towards(g, pts[:0], same_side, 1.0, 0.0).shape == (0,)


def test_a_convex_ball_seen_from_all_around_has_nothing_unseen():
    cams = ring_cameras([-60, -20, 20, 60])
    assert unseen_outside(sphere(), cams).sum() == 0


def test_a_closed_pocket_is_unseen_and_filled():
    grid = pocket()
    cams = ring_cameras([-60, -20, 20, 60])
    hidden = unseen_outside(grid, cams)
    centre = R // 2
    assert hidden[centre, centre, centre]
    assert not hidden[2, centre, centre]  # far outside stays empty
    assert hidden.sum() == pytest.approx((grid > 0)[np.sqrt(X**2 + Y**2 + Z**2) < 0.25].sum(), rel=0.1)
    filled, n = fill_unseen(grid, cams)
    assert n == hidden.sum() and (filled[hidden] < 0).all() and (filled[~hidden] == grid[~hidden]).all()
    mesh = extract_mesh(None, grid=filled, keep_largest=False)
    assert mesh.area == pytest.approx(4 * math.pi * 0.6**2, rel=0.03)  # only the outer sphere is left


def test_a_pocket_open_towards_no_camera_is_filled_one_open_towards_a_camera_is_kept():
    grid = pocket(tunnel=0.08)
    centre = R // 2
    above = ring_cameras([30, 70])  # the tunnel opens downwards: no camera looks into it
    assert unseen_outside(grid, above)[centre, centre, centre]
    below = look_at_cameras(np.array([[0.01, 0.0, -3.0]]), 64, 64, fov_deg=40.0)  # straight up the tunnel
    assert not unseen_outside(grid, below)[centre, centre, centre]


def test_no_inside_or_no_cameras_fills_nothing():
    cams = ring_cameras([20])
    empty = np.ones((8, 8, 8), np.float32)
    assert unseen_outside(empty, cams).sum() == 0
    assert fill_unseen(pocket(), cams.subset([]))[1] == 0


def test_extract_mesh_with_cameras_drops_the_hidden_pocket():
    """The same filling through ``extract_mesh(cameras=...)``, from an SDF function rather than a grid."""

    def ball_with_pocket(x: torch.Tensor) -> torch.Tensor:
        r = x.norm(dim=-1)
        return torch.maximum(r - 0.6, 0.25 - r)

    cams = ring_cameras([-60, -20, 20, 60])
    plain = extract_mesh(ball_with_pocket, resolution=R, keep_largest=False)
    filled = extract_mesh(ball_with_pocket, resolution=R, keep_largest=False, cameras=cams)
    assert plain.area == pytest.approx(4 * math.pi * (0.6**2 + 0.25**2), rel=0.03)
    assert filled.area == pytest.approx(4 * math.pi * 0.6**2, rel=0.03)


def test_training_cameras_falls_back_when_the_data_is_gone(tmp_path, capsys):
    from types import SimpleNamespace

    from lumisurf.config import Config
    from lumisurf.data.scene import Normalization
    from lumisurf.jobs.extract import training_cameras

    cfg = Config()
    cfg.data.path = str(tmp_path / "moved_away")
    loaded = SimpleNamespace(cfg=cfg, normalization=Normalization(center=(0.0, 0.0, 0.0), scale=1.0))
    assert training_cameras(loaded) is None
    assert "unseen space left as the SDF has it" in capsys.readouterr().out
