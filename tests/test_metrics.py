"""Tests for lumisurf.eval: image metrics (PSNR/SSIM/LPIPS/IoU/normal MAE) and Chamfer distance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from lumisurf.errors import LumisurfError
from lumisurf.eval import (
    chamfer_distance,
    load_mesh,
    lpips_available,
    lpips_score,
    mask_iou,
    normal_mae_deg,
    psnr,
    sample_surface,
    ssim,
    ssim_map,
)


def _smooth_image(seed: int, h: int = 48, w: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 8, w // 8, generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    return img[0].permute(1, 2, 0).contiguous()  # [H, W, 3]


def test_psnr_by_hand():
    t = torch.full((8, 8, 3), 0.5)
    assert psnr(t + 0.1, t) == pytest.approx(20.0, abs=1e-5)  # mse 0.01
    assert psnr(t, t) == math.inf
    pred = (t + 0.1).clone()
    pred[:, 4:] = t[:, 4:] + 0.5  # big error only where the mask is 0
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    assert psnr(pred, t, mask) == pytest.approx(20.0, abs=1e-5)
    assert psnr(pred.unsqueeze(0), t.unsqueeze(0), mask.unsqueeze(0)) == pytest.approx(20.0, abs=1e-5)


def test_ssim_identity_and_noise_monotone():
    x = _smooth_image(0)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    vals = [ssim((x + s * noise).clamp(0, 1), x) for s in (0.01, 0.05, 0.2)]
    assert vals[0] > vals[1] > vals[2] and vals[0] < 1.0


def test_ssim_matches_skimage():
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    x = _smooth_image(2)
    g = torch.Generator().manual_seed(3)
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = structural_similarity(
        y.numpy().astype(np.float64),
        x.numpy().astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )
    assert ssim(y, x) == pytest.approx(ref, abs=1e-3)
    # batched input = mean over the batch of equal-sized images
    both = ssim(torch.stack([y, x]), torch.stack([x, x]))
    assert both == pytest.approx(0.5 * (ref + 1.0), abs=1e-3)


def test_ssim_map_shape_and_gradcheck():
    a = torch.rand(2, 3, 20, 17, dtype=torch.float64)
    assert ssim_map(a, a).shape == (2, 3, 10, 7)
    assert ssim_map(a, a, window=4, sigma=1.5, stride=4).shape == (2, 3, 5, 4)
    p = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    t = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q: ssim_map(q, t, window=3, sigma=1.0), (p,))


def test_mask_iou_by_hand():
    a = torch.zeros(4, 4)
    b = torch.zeros(4, 4)
    a[:2, :] = 0.9  # 8 pixels
    b[1:3, :] = 0.7  # 8 pixels, 4 shared
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(a, b, threshold=0.8) == 0.0  # b vanishes at 0.8, a stays: 0 / 8
    assert mask_iou(torch.zeros(3, 3), torch.zeros(3, 3)) == 1.0


def test_normal_mae_by_hand():
    gt = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    pred = torch.tensor([[0.0, 5.0, 0.0], [3.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # 0 deg, 90 deg, no GT
    assert normal_mae_deg(pred, gt, torch.ones(3)) == pytest.approx(45.0)
    assert normal_mae_deg(pred, gt, torch.tensor([1.0, 3.0, 100.0])) == pytest.approx(67.5)
    assert normal_mae_deg(pred[1:2], gt[1:2], torch.ones(1)) == pytest.approx(90.0)
    assert math.isnan(normal_mae_deg(pred, gt, torch.tensor([0.0, 0.0, 5.0])))
    # 60 degrees in the x-y plane, batched image shape [1, 1, 2, 3]
    p60 = torch.tensor([[[[math.sqrt(3) / 2, 0.5, 0.0], [0.0, 2.0, 0.0]]]])
    g60 = torch.tensor([[[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]])
    assert normal_mae_deg(p60, g60, torch.tensor([[[1.0, 0.0]]])) == pytest.approx(60.0)


def test_lpips_available_offline():
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    before = sorted(ckpt.iterdir()) if ckpt.is_dir() else None
    ok, reason = lpips_available()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason
    after = sorted(ckpt.iterdir()) if ckpt.is_dir() else None
    assert before == after  # nothing downloaded
    x = torch.rand(16, 16, 3)
    score = lpips_score(x, x)
    assert (score is None) == (not ok)
    assert lpips_available("resnet")[0] is False


def _sphere(r: float) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=r)


def test_sample_surface_shapes():
    pts, nrm = sample_surface(_sphere(0.5), 1000, seed=3)
    assert pts.shape == (1000, 3) and nrm.shape == (1000, 3)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 0.5, atol=2e-3)
    assert np.all((pts * nrm).sum(-1) > 0)  # outward face normals
    np.testing.assert_array_equal(
        sample_surface(_sphere(0.5), 10, seed=3)[0], sample_surface(_sphere(0.5), 10, seed=3)[0]
    )


def test_chamfer_self_and_concentric():
    m = _sphere(0.5)
    diag = float(np.linalg.norm(m.extents))  # ~1.73
    self_cd = chamfer_distance(m, m, n_samples=50_000)
    # independent samples: the noise floor is ~half the sample spacing (~0.004 here);
    # bound: 5e-3 x bbox diagonal (0.0087)
    assert self_cd["chamfer"] < 5e-3 * diag
    assert self_cd["normal_consistency"] > 0.99
    cd = chamfer_distance(_sphere(0.5), _sphere(0.55), n_samples=50_000)
    assert cd["chamfer"] == pytest.approx(0.05, rel=0.05)
    assert cd["accuracy"] == pytest.approx(0.05, rel=0.05)
    assert cd["completeness"] == pytest.approx(0.05, rel=0.05)
    assert set(cd) == {"chamfer", "accuracy", "completeness", "normal_consistency"}


def test_load_mesh_errors(tmp_path):
    with pytest.raises(LumisurfError, match="not found"):
        load_mesh(tmp_path / "missing.ply")
    bad = tmp_path / "bad.ply"
    bad.write_text("this is not a ply file")
    with pytest.raises(LumisurfError):
        load_mesh(bad)
    cloud = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(cloud)
    with pytest.raises(LumisurfError, match="no triangles"):
        load_mesh(cloud)
