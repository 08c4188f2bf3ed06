"""Sparse voxel set: dense init, subdivision that preserves the trilinear field, pruning, state remapping."""

from __future__ import annotations

import pytest
import torch

from lumisurf.voxels.octree import MAX_LEVEL
from lumisurf.voxels.raster_torch import corner_weights
from lumisurf.voxels.structure import VoxelOctree

SMIN = torch.tensor([-1.0, -1.0, -1.0])


def field_at(tree: VoxelOctree, values: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Trilinear field of corner ``values`` [M] at ``pts`` [P, 3] (each point in the leaf holding it)."""
    lo, size = tree.boxes()
    inside = ((pts[:, None] >= lo[None]) & (pts[:, None] < lo[None] + size[None, :, None])).all(-1)  # [P, N]
    assert (inside.sum(1) == 1).all()
    v = inside.float().argmax(1)
    u = (pts - lo[v]) / size[v, None]
    return (corner_weights(u) * values[tree.vox_key[v]]).sum(-1)


def test_dense_counts_and_shared_corners():
    tree = VoxelOctree.dense(2, SMIN, 2.0)
    assert len(tree) == 64 and tree.n_corners == 125
    pos = tree.corner_positions()
    assert pos.min().item() == -1.0 and pos.max().item() == 1.0


def test_subdivision_preserves_the_field_and_carries_state():
    tree = VoxelOctree.dense(2, SMIN, 2.0)
    g = torch.Generator().manual_seed(0)
    values = torch.randn(tree.n_corners, generator=g)
    color = torch.rand(len(tree), 3, generator=g)
    mask = torch.rand(len(tree), generator=g) < 0.3
    new, remap = tree.subdivide(mask)
    assert len(new) == len(tree) + 7 * int(mask.sum())
    new_values = remap.corners(values)
    pts = torch.rand(2000, 3, generator=g) * 1.98 - 0.99
    assert torch.allclose(field_at(new, new_values, pts), field_at(tree, values, pts), atol=1e-5)
    # a child's color row is its parent's
    kids = remap.voxels(color)[len(tree) - int(mask.sum()) :]
    assert torch.equal(kids, color[mask].repeat_interleave(8, 0))
    # a second round (mixed levels) still preserves it; a moment tensor maps the same way, staying >= 0
    new2, remap2 = new.subdivide(torch.rand(len(new), generator=g) < 0.2)
    assert torch.allclose(field_at(new2, remap2.corners(new_values), pts), field_at(tree, values, pts), atol=1e-5)
    assert (remap2.corners(new_values**2) >= 0).all()


def test_prune_keeps_values_and_drops_orphan_corners():
    tree = VoxelOctree.dense(1, SMIN, 2.0)
    values = torch.arange(tree.n_corners, dtype=torch.float32)
    keep = torch.tensor([True, False, False, False, False, False, False, True])
    new, remap = tree.select(keep)
    assert len(new) == 2 and new.n_corners == 15  # two opposite octants share only the centre corner
    assert torch.equal(remap.corners(values)[new.vox_key], values[tree.vox_key[keep]])
    with pytest.raises(ValueError, match="every voxel"):
        tree.select(torch.zeros(8, dtype=torch.bool))


def test_limits():
    tree = VoxelOctree.dense(1, SMIN, 2.0)
    deep = VoxelOctree(tree.path[:1], torch.tensor([MAX_LEVEL]), SMIN, 2.0)
    with pytest.raises(ValueError, match="maximum level"):
        deep.subdivide(torch.tensor([True]))
    with pytest.raises(ValueError, match="at least one"):
        VoxelOctree(tree.path[:0], tree.level[:0], SMIN, 2.0)


def test_locate_finds_the_leaf_of_every_point():
    tree = VoxelOctree.dense(1, SMIN, 2.0)
    g = torch.Generator().manual_seed(3)
    tree, _ = tree.subdivide(torch.rand(len(tree), generator=g) < 0.5)
    tree, _ = tree.subdivide(torch.rand(len(tree), generator=g) < 0.3)
    tree, _ = tree.select(torch.rand(len(tree), generator=g) < 0.8)  # holes: pruned space
    pts = torch.rand(3000, 3, generator=g) * 2.4 - 1.2  # some outside the root cube
    found = tree.locate(pts)
    lo, size = tree.boxes()
    inside = ((pts[:, None] >= lo[None]) & (pts[:, None] < lo[None] + size[None, :, None])).all(-1)  # [P, N]
    expect = torch.where(inside.any(1), inside.float().argmax(1), torch.full_like(found, -1))
    assert torch.equal(found, expect) and (found == -1).any() and (found >= 0).any()
