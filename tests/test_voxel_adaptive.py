"""Sparse-voxel layout: visual-hull init, pruning and subdivision under a cap, memory budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumisurf.data.synthetic import look_at_cameras
from lumisurf.voxels.adaptive import adapt, bytes_per_voxel, visual_hull_octree, voxel_cap
from lumisurf.voxels.model import SparseVoxelModel
from lumisurf.voxels.structure import VoxelOctree

SMIN = torch.full((3,), -1.0)


def _disc_masks(cams, radius: float = 0.4):
    """Masks of a ball of ``radius`` at the origin: pixels whose ray passes within ``radius``."""
    masks = []
    for i in range(len(cams)):
        o, d, h, w = cams.pixel_rays(i)
        t = -(o * d).sum(-1, keepdim=True)
        masks.append(((o + t * d).norm(dim=-1) < radius).reshape(h, w))
    return torch.stack(masks)


def test_visual_hull_keeps_the_ball_and_drops_the_corners():
    eyes = 4.0 * np.array(
        [
            [1.0, 0.05, 0.1],
            [-1.0, 0.1, -0.05],
            [0.1, 1.0, 0.05],
            [-0.05, -1.0, 0.1],
            [0.1, 0.05, 1.0],
            [0.05, -0.1, -1.0],
        ]
    )  # every view sees the whole cube
    cams = look_at_cameras(eyes, 48, 48, fov_deg=60.0)
    tree = visual_hull_octree(4, SMIN, 2.0, cams, _disc_masks(cams))
    c = tree.centres()
    assert 0 < len(tree) < 16**3 // 4
    assert (c.norm(dim=-1) < 0.4).sum() == (VoxelOctree.dense(4, SMIN, 2.0).centres().norm(dim=-1) < 0.4).sum()
    assert c.abs().amax().item() < 0.9  # the cube's corners are carved away
    assert len(visual_hull_octree(2, SMIN, 2.0)) == 64  # no masks: dense
    with pytest.raises(ValueError, match="holds no voxel"):
        visual_hull_octree(3, SMIN, 2.0, cams, torch.zeros(6, 48, 48, dtype=torch.bool))


def test_adapt_prunes_subdivides_and_respects_the_cap():
    model = SparseVoxelModel(VoxelOctree.dense(2, SMIN, 2.0))
    opt = torch.optim.Adam([model.geo, model.sh0, model.shs])
    g = torch.Generator().manual_seed(0)
    max_w = torch.rand(64, generator=g)
    prio = torch.rand(64, generator=g)
    res = adapt(model, opt, max_w, prio, prune_below=0.5, subdivide_fraction=0.25, cap=10_000)
    kept = int((max_w >= 0.5).sum())
    assert res.pruned == 64 - kept and res.subdivided == -(-kept // 4) and res.voxels == kept + 7 * res.subdivided
    assert len(model.tree) == res.voxels and model.sh0.shape[0] == res.voxels == model.shs.shape[0]
    # the cap limits subdivision; nothing is subdivided at the cap, and the best voxel survives any threshold
    res = adapt(
        model, opt, torch.ones(len(model.tree)), torch.ones(len(model.tree)), 0.0, 1.0, cap=len(model.tree) + 14
    )
    assert res.subdivided == 2
    res = adapt(model, opt, torch.zeros(len(model.tree)), torch.ones(len(model.tree)), 1.0, 1.0, cap=0)
    assert res.voxels == 1 and res.subdivided == 0


def test_memory_budget_caps_the_voxels():
    per = bytes_per_voxel(4)
    assert per == 4 * (1 + 48) * 3 + 80
    assert voxel_cap(10**9, 10.0, 4) == int(10 * 2**20 / per)
    assert voxel_cap(1000, None, 4) == 1000


def test_pixel_footprint_by_hand_and_only_split_where_allowed():
    from lumisurf.voxels.adaptive import pixel_footprint

    cams = look_at_cameras(np.array([[3.0, 0.0, 0.0], [0.0, 6.0, 0.0]]), 40, 40, fov_deg=40.0)
    fx = float(cams.fx[0])
    pts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.5]])
    fp = pixel_footprint(pts, cams)
    assert fp[0] == pytest.approx(3.0 / fx, rel=1e-5)  # the nearer camera wins
    assert fp[1] == pytest.approx(2.0 / fx, rel=1e-5)  # 2 units in front of camera 0
    assert torch.isinf(fp[2])  # outside both images
    model = SparseVoxelModel(VoxelOctree.dense(2, SMIN, 2.0))
    can = torch.zeros(64, dtype=torch.bool)
    can[:3] = True
    res = adapt(model, None, torch.ones(64), torch.ones(64), 0.0, 1.0, cap=10_000, can_split=can)
    assert res.subdivided == 3 and res.voxels == 64 + 21
