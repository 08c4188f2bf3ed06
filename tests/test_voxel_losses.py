"""Sparse-voxel regularisers: hand-computed values on linear and bilinear fields, float64 gradcheck."""

from __future__ import annotations

import torch

from lumisurf.losses.voxels import (
    face_neighbours,
    laplacian_smooth_,
    voxel_eikonal,
    voxel_gradient,
    voxel_smoothness,
    voxel_tv,
    voxel_twist,
)
from lumisurf.voxels.octree import CORNER_OFFSETS
from lumisurf.voxels.structure import VoxelOctree

OFF = CORNER_OFFSETS.double()  # [8, 3]
SIZE = torch.tensor([0.5, 0.25], dtype=torch.float64)


def _linear(grad: torch.Tensor, size: torch.Tensor) -> torch.Tensor:  # [N, 8]
    return (OFF[None] * size[:, None, None]) @ grad + 0.7


def test_gradient_of_a_linear_field_is_exact_and_has_no_twist():
    g = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    corners = _linear(g, SIZE)
    assert torch.allclose(voxel_gradient(corners, SIZE), g.expand(2, 3))
    assert voxel_twist(corners, SIZE) < 1e-20
    unit = _linear(g / g.norm(), SIZE)
    assert voxel_eikonal(unit, SIZE) < 1e-20
    assert torch.isclose(voxel_eikonal(corners, SIZE), (g.norm() - 1) ** 2)


def test_twist_of_a_bilinear_field_by_hand():
    """f = x y over a voxel of edge s: only the two corners at x = y = s are non-zero (s^2), so the xy sum is
    2 s^2 / 4 / s = s / 2 and the xz, yz, xyz sums cancel; the gradient at the centre is (s / 2, s / 2, 0)."""
    s = SIZE[:1]
    corners = ((OFF[:, 0] * s) * (OFF[:, 1] * s))[None]  # [1, 8]
    assert torch.isclose(voxel_twist(corners, s), (s[0] / 2) ** 2)
    assert torch.allclose(voxel_gradient(corners, s), torch.tensor([[s[0] / 2, s[0] / 2, 0.0]], dtype=torch.float64))


def test_tv_by_hand():
    """A linear field: every x edge differs by g_x s, y by g_y s, z by g_z s; 4 edges of each of 3 axes."""
    g = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    corners = _linear(g, SIZE[:1])
    assert torch.isclose(voxel_tv(corners), ((g * SIZE[0]) ** 2).mean())


def test_gradcheck():
    corners = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    size = torch.tensor([0.5, 0.3, 0.1], dtype=torch.float64)
    pairs = torch.tensor([[0, 1], [1, 2]])
    for f in (
        lambda c: voxel_eikonal(c, size),
        lambda c: voxel_twist(c, size),
        voxel_tv,
        lambda c: voxel_smoothness(c, size, pairs),
    ):
        assert torch.autograd.gradcheck(f, (corners,))


def test_face_neighbours_of_a_dense_grid():
    """A dense 4^3 grid has 3 * 4 * 4 * 3 = 144 face-sharing pairs, each found once, all one cell apart."""
    tree = VoxelOctree.dense(2, torch.full((3,), -1.0), 2.0)
    pairs = face_neighbours(tree)
    assert pairs.shape == (144, 2)
    gap = tree.centres()[pairs[:, 1]] - tree.centres()[pairs[:, 0]]
    assert torch.allclose(gap.abs().sum(-1), torch.full((144,), 0.5))
    assert len({tuple(p) for p in pairs.tolist()}) == 144


def test_smoothness_is_zero_on_a_linear_field_and_sees_a_kink_by_hand():
    """On a 2-cell grid, f = x on the left cell and f = x + 2 (x - x0) past the shared face: the x gradient
    jumps by 2 over a centre distance s, so the loss is (2 / s)^2."""
    tree = VoxelOctree.dense(1, torch.full((3,), -1.0), 2.0)  # 8 cells of edge 1
    size = tree.boxes()[1].double()
    pos = tree.corner_positions().double()
    pairs = face_neighbours(tree)
    linear = (pos @ torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64))[tree.vox_key]
    assert voxel_smoothness(linear, size, pairs) < 1e-20
    x = pos[:, 0]
    kinked = (x + 2.0 * (x - 0.0).clamp_min(0.0))[tree.vox_key]  # the kink on the plane x = 0 (shared faces)
    x_pairs = pairs[(tree.centres()[pairs[:, 1]] - tree.centres()[pairs[:, 0]])[:, 0] > 0]
    assert torch.isclose(voxel_smoothness(kinked, size, x_pairs), torch.tensor(4.0, dtype=torch.float64))


def test_laplacian_step_by_hand():
    """Dense 4^3 cells (5^3 corners): a spike of 1 at an interior corner (6 edge neighbours) drops to 1 - lam
    and each neighbour rises by lam / 6; a linear field stays put at interior corners."""
    tree = VoxelOctree.dense(2, torch.full((3,), -1.0), 2.0)
    pos = tree.corner_positions()
    centre = (pos.abs().sum(-1) < 1e-6).nonzero().item()
    spike = torch.zeros(tree.n_corners)
    spike[centre] = 1.0
    laplacian_smooth_(spike, tree.vox_key, 0.3)
    assert torch.isclose(spike[centre], torch.tensor(0.7))
    nbr = ((pos - pos[centre]).norm(dim=-1) - 0.5).abs() < 1e-6
    assert nbr.sum() == 6 and torch.allclose(spike[nbr], torch.full((6,), 0.05))
    linear = pos @ torch.tensor([0.3, -0.2, 0.9])
    smoothed = laplacian_smooth_(linear.clone(), tree.vox_key, 0.3)
    interior = (pos.abs() < 0.99).all(-1)
    assert torch.allclose(smoothed[interior], linear[interior], atol=1e-6)
