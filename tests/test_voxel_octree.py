"""Octree addressing of sparse voxels: Morton paths, boxes, shared corners, direction-dependent order."""

from __future__ import annotations

import torch

from lumisurf.voxels.octree import (
    MAX_LEVEL,
    children,
    corner_keys,
    direction_octant,
    ijk_to_path,
    lattice_to_world,
    order_rank,
    path_to_ijk,
    shared_corners,
    voxel_boxes,
)


def test_path_hand_values():
    # level 1, cell (1, 0, 1): child index 4*1 + 2*0 + 1 = 5 in the top triple
    p = ijk_to_path(torch.tensor([[1, 0, 1]]), torch.tensor([1]))
    assert p.item() == 5 << 45
    # level 2, cell (3, 1, 2): level-1 triple from the high bits (1, 0, 1) = 5, level-2 from the low (1, 1, 0) = 6
    p = ijk_to_path(torch.tensor([[3, 1, 2]]), torch.tensor([2]))
    assert p.item() == (5 << 45) | (6 << 42)


def test_path_round_trip_at_every_level():
    g = torch.Generator().manual_seed(0)
    level = torch.randint(1, MAX_LEVEL + 1, (500,), generator=g)
    ijk = (torch.rand(500, 3, generator=g) * torch.pow(2.0, level.double())[:, None]).long()
    assert torch.equal(path_to_ijk(ijk_to_path(ijk, level), level), ijk)


def test_boxes_and_children_tile_the_parent():
    path, level = ijk_to_path(torch.tensor([[1, 0, 1]]), torch.tensor([1])), torch.tensor([1])
    smin = torch.tensor([-1.0, -1.0, -1.0])
    c, s = voxel_boxes(path, level, smin, 2.0)
    assert torch.allclose(c, torch.tensor([[0.5, -0.5, 0.5]])) and s.item() == 1.0
    kp, kl = children(path, level)
    kc, ks = voxel_boxes(kp, kl, smin, 2.0)
    assert (kl == 2).all() and torch.allclose(ks, torch.full((8,), 0.5))
    assert torch.allclose(kc.mean(0), c[0])
    # child k sits at offset (k>>2 & 1, k>>1 & 1, k & 1) inside the parent
    off = torch.tensor([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], dtype=torch.float32)
    assert torch.allclose(kc, c[0] - 0.25 + 0.5 * off)


def test_corners_are_shared_between_neighbours_and_across_levels():
    # two neighbouring level-1 cells along x share a face: 4 corners; 12 unique in all
    path = ijk_to_path(torch.tensor([[0, 0, 0], [1, 0, 0]]), torch.tensor([1, 1]))
    grid, key = shared_corners(path, torch.tensor([1, 1]))
    assert grid.shape == (12, 3) and key.shape == (2, 8)
    assert len(set(key[0].tolist()) & set(key[1].tolist())) == 4
    # the level-2 cell in the low corner of level-1 cell (1, 0, 0) starts at the same lattice point
    k1 = corner_keys(ijk_to_path(torch.tensor([[1, 0, 0]]), torch.tensor([1])), torch.tensor([1]))
    k2 = corner_keys(ijk_to_path(torch.tensor([[2, 0, 0]]), torch.tensor([2])), torch.tensor([2]))
    assert torch.equal(k1[0, 0], k2[0, 0])
    world = lattice_to_world(grid, torch.tensor([-1.0, -1.0, -1.0]), 2.0)
    assert world.min().item() == -1.0 and world.max().item() == 1.0


def _random_leaves(seed: int, n_split: int = 40):
    """A mixed-level leaf set covering the root: random leaves subdivided repeatedly."""
    g = torch.Generator().manual_seed(seed)
    path, level = children(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    for _ in range(n_split):
        i = int(torch.randint(len(path), (1,), generator=g))
        if level[i] >= 5:
            continue
        kp, kl = children(path[i : i + 1], level[i : i + 1])
        keep = torch.arange(len(path)) != i
        path, level = torch.cat([path[keep], kp]), torch.cat([level[keep], kl])
    return path, level


def _entry_exit(o, d, lo, hi):
    inv = 1.0 / d
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    return torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)


def test_direction_order_equals_depth_order_for_every_ray():
    smin = torch.tensor([-1.0, -1.0, -1.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    for seed in range(3):
        path, level = _random_leaves(seed)
        c, s = voxel_boxes(path, level, smin, 2.0)
        lo, hi = c - s[:, None] / 2, c + s[:, None] / 2
        o = torch.randn(200, 3, generator=g, dtype=torch.float64) * 0.2 + torch.randn(1, 3, generator=g).double() * 3
        target = torch.rand(200, 3, generator=g, dtype=torch.float64) * 1.6 - 0.8
        d = torch.nn.functional.normalize(target - o, dim=-1)
        for r in range(len(o)):
            a, b = _entry_exit(o[r], d[r], lo, hi)
            hit = (a < b) & (b > 0)
            idx = hit.nonzero().squeeze(1)
            by_depth = idx[torch.argsort(a[idx])]
            by_rank = idx[torch.argsort(order_rank(path[idx], direction_octant(d[r : r + 1])[0]))]
            assert torch.equal(by_depth, by_rank)
