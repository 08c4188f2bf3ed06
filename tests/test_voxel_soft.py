"""Soft rasterization variants (voxels/soft.py): limits, hand values, gradients, a training smoke."""

from __future__ import annotations

import math

import numpy as np
import torch

from lumisurf.data.synthetic import look_at_cameras
from lumisurf.voxels.model import SparseVoxelModel
from lumisurf.voxels.soft import SoftRaster, box_distance, softmax_weights
from lumisurf.voxels.structure import VoxelOctree


def _model(mode: str = "density") -> SparseVoxelModel:
    """A 4^3 grid of which the 8 central voxels are dense (raw 3) and the rest empty (raw -20)."""
    tree = VoxelOctree.dense(2, torch.full((3,), -1.0), 2.0)
    central = (tree.centres().abs() < 0.5).all(-1)
    keep, _ = tree.select(central)
    return SparseVoxelModel(keep, mode=mode, sh_bands=1, geo_init=3.0)


def _render(model, soft, backend="torch"):
    cams = look_at_cameras(np.array([[2.5, 0.4, 0.3]]), 24, 20, fov_deg=50.0)
    model.soft = soft
    return model.rasterize_view(cams, 0, torch.ones(3), backend=backend)


def test_box_distance_by_hand():
    lo, size = torch.zeros(3), torch.tensor(1.0)
    p = torch.tensor([[0.5, 0.5, 0.5], [2.0, 0.5, 0.5], [2.0, 3.0, 0.5]])
    assert torch.allclose(box_distance(p, lo, size), torch.tensor([0.0, 1.0, math.sqrt(1 + 4)]))


def test_softmax_weights_by_hand():
    tau = 0.1
    alpha = torch.tensor([[0.5, 0.5, 0.7]])
    mid = torch.tensor([[1.0, 1.0 + tau * math.log(2.0), 9.0]])
    hit = torch.tensor([[True, True, False]])
    w = softmax_weights(alpha, mid, hit, tau)
    den = 0.5 + 0.25 + math.exp(-1.0 / tau)
    assert torch.allclose(w, torch.tensor([[0.5 / den, 0.25 / den, 0.0]]))


def test_tiny_footprint_is_the_exact_render_and_a_wide_one_reaches_past_the_silhouette():
    model = _model()
    exact = _render(model, None, backend="torch")
    tiny = _render(model, SoftRaster(sigma=1e-3))
    diff = (tiny["opacity"] - exact["opacity"]).abs()
    assert diff.mean() < 1e-4 and (diff > 1e-6).float().mean() < 0.01  # a ray grazing a face may differ
    wide = _render(model, SoftRaster(sigma=1.5))
    outside = exact["opacity"][:, 0] < 1e-6
    assert outside.any() and (wide["opacity"][:, 0][outside] > 1e-3).any()  # the fringe covers more pixels
    (wide["opacity"][:, 0][outside]).sum().backward()
    assert model.geo.grad is not None and model.geo.grad.abs().sum() > 0  # gradients from outside


def test_softmax_render_is_finite_and_differentiable():
    model = _model("sdf")
    model.geo.data = model.tree.corner_positions().norm(dim=-1) - 0.4
    out = _render(model, SoftRaster(temperature=0.05))
    assert torch.isfinite(out["rgb"]).all() and out["opacity"].max() > 0.5
    out["rgb"].sum().backward()
    assert torch.isfinite(model.geo.grad).all() and model.geo.grad.abs().sum() > 0


def test_soft_variants_refuse_the_warp_backend():
    import pytest

    with pytest.raises(RuntimeError, match="soft variants"):
        _render(_model(), SoftRaster(sigma=1.0), backend="warp")
