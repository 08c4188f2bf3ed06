"""TSDF fusion of depth maps: hand values along one ray, an analytic sphere back with its radius, and the
density voxels meshed through it."""

from __future__ import annotations

import numpy as np
import torch

from lumisurf.data.synthetic import look_at_cameras
from lumisurf.mesh.marching_cubes import extract_mesh
from lumisurf.mesh.tsdf import FusedDepth, fuse_rendered_depth, view_tsdf

R = 0.5


def _sphere_depth(cams, i):
    """Exact ray distance to the sphere of radius R at the origin, and where the rays hit it."""
    o, d, h, w = cams.pixel_rays(i)
    b = (o * d).sum(-1)
    disc = b**2 - ((o**2).sum(-1) - R**2)
    t = -b - disc.clamp_min(0).sqrt()
    return t.reshape(h, w), (disc > 0).reshape(h, w)


def _ring_cameras(n=12, res=48):
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    eyes = np.stack([2.5 * np.cos(ang), 2.5 * np.sin(ang), 1.2 * np.where(np.arange(n) % 2, 1, -1)], 1)
    return look_at_cameras(eyes, res, res, fov_deg=40.0)


def test_view_tsdf_by_hand_along_the_central_ray():
    cams = _ring_cameras()
    depth, hit = _sphere_depth(cams, 0)
    eye = cams.c2w[0, :3, 3]
    toward = -eye / eye.norm()
    dist_to_surface = float(eye.norm()) - R
    pts = eye + toward * torch.tensor([dist_to_surface - 0.05, dist_to_surface + 0.02, dist_to_surface + 0.5])[:, None]
    sdf, speaks, behind = view_tsdf(pts, cams, 0, depth, hit, trunc=0.1)
    assert torch.allclose(sdf[:2], torch.tensor([0.5, -0.2]), atol=0.03) and speaks[:2].all()
    assert not speaks[2] and behind[2] and not behind[:2].any()  # far behind the surface: no distance, inside
    off = torch.tensor([[0.0, 0.0, 0.95]])  # outside the sphere: its pixel sees the background
    sdf_off, speaks_off, _ = view_tsdf(off, cams, 0, depth, hit, trunc=0.1)
    assert speaks_off.all() and sdf_off.item() == 1.0


def test_fused_sphere_comes_back_with_its_radius():
    cams = _ring_cameras()
    fused = fuse_rendered_depth(_sphere_depth, cams, trunc=0.06)
    assert isinstance(fused, FusedDepth) and fused.depth.shape == (12, 48, 48)
    assert fused(torch.zeros(1, 3)).item() == -1.0  # the centre: behind the surface in every view
    mesh = extract_mesh(fused, resolution=64, bound=1.0, keep_largest=False)
    assert mesh.is_watertight and abs(mesh.volume - 4 / 3 * np.pi * R**3) < 0.06  # one shell, no inner one
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(np.median(radii) - R) < 0.02 and radii.max() < R + 0.06


def test_density_voxels_are_meshed_from_their_depth():
    from lumisurf.voxels.model import SparseVoxelModel
    from lumisurf.voxels.structure import VoxelOctree

    tree = VoxelOctree.dense(5, torch.full((3,), -1.0), 2.0)
    sdf = tree.corner_positions().norm(dim=-1) - R
    model = SparseVoxelModel(tree, mode="density", sh_bands=1, geo_init=-sdf * 400.0)
    fused = model.surface_function(_ring_cameras(res=40), resolution=64)
    assert isinstance(fused, FusedDepth)
    radii = np.linalg.norm(extract_mesh(fused, resolution=64, bound=1.0).vertices, axis=1)
    assert abs(np.median(radii) - R) < 0.04
