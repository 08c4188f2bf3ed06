"""Reflection-aware weights (Ref-NeuS): projection, bilinear taps, score and weights by hand, the training hook."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_train_smoke import TINY

from lumisurf.config import ReflectionLossConfig, apply_overrides
from lumisurf.data.pixel_sampling.base import PixelBatch
from lumisurf.data.scene import Split
from lumisurf.data.synthetic import look_at_cameras
from lumisurf.losses.geometry import normal_smoothness_loss
from lumisurf.losses.reflection import (
    anomaly_weights,
    bilinear_lookup,
    color_inverse_covariance,
    edge_gate,
    project_to_views,
    reflection_score,
)
from lumisurf.presets import preset_config
from lumisurf.train.reflection_weights import ReflectionWeights
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer


def _ring(n: int = 6, res: int = 32):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return look_at_cameras(np.stack([3 * np.cos(a), 3 * np.sin(a), 0.5 * np.ones(n)], 1), res, res)


def test_projection_matches_the_camera_rays():
    cams = _ring()
    cam_idx = torch.tensor([0, 3, 5])
    px, py = torch.tensor([3.5, 16.0, 30.25]), torch.tensor([8.0, 16.0, 1.5])
    o, d = cams.rays(cam_idx, px, py)
    points = o + 2.2 * d  # on each pixel's ray
    qx, qy, front = project_to_views(points, cams, cam_idx[:, None])
    torch.testing.assert_close(qx[:, 0], px, atol=1e-4, rtol=0)
    torch.testing.assert_close(qy[:, 0], py, atol=1e-4, rtol=0)
    assert front.all()
    _, _, behind = project_to_views(o - d, cams, cam_idx[:, None])  # one unit behind each camera
    assert not behind.any()


def test_bilinear_lookup_is_exact_on_a_linear_image():
    h, w = 5, 7
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    img = torch.stack([xs + 10 * ys, 2 * xs, ys], -1)[None]  # pixel (col, row) centre holds (c + 10 r, 2c, r)
    px, py = torch.tensor([[1.5, 2.25, 6.5]]), torch.tensor([[0.5, 3.75, 1.0]])  # centres at +0.5
    vals, inside = bilinear_lookup(img, torch.zeros(1, 3, dtype=torch.long), px, py)
    c, r = px - 0.5, py - 0.5
    assert inside.tolist() == [[True, True, False]]  # the last tap's right neighbour is outside
    torch.testing.assert_close(vals[inside][:, 0], (c + 10 * r)[inside])
    torch.testing.assert_close(vals[inside][:, 1], 2 * c[inside])
    as_u8 = bilinear_lookup((img * 2).to(torch.uint8), torch.zeros(1, 1, dtype=torch.long), px[:, :1], py[:, :1])[0]
    torch.testing.assert_close(as_u8[0, 0], torch.tensor([2.0, 4.0, 0.0]) / 255.0)


def test_score_and_weights_by_hand():
    ref = torch.zeros(2, 3)
    colors = torch.tensor([[[0.3, 0.4, 0.0], [0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, True], [False, False]])
    score = reflection_score(ref, colors, valid, torch.eye(3))
    torch.testing.assert_close(score, torch.tensor([0.25, 0.0]))  # (0.5 + 0) / 2; no valid view
    only_first = reflection_score(ref, colors, torch.tensor([[True, False], [True, False]]), 4 * torch.eye(3))
    torch.testing.assert_close(only_first, torch.tensor([1.0, 2.0]))  # sqrt(4 * 0.25), sqrt(4 * 1)
    torch.testing.assert_close(anomaly_weights(torch.tensor([0.1, 0.5, 2.0]), 2.0), torch.tensor([1.0, 1.0, 0.25]))


def test_edge_gate_by_hand():
    flat = torch.full((1, 9, 9, 3), 0.4)
    step = flat.clone()
    step[:, :, 5:] = 0.6  # a vertical edge between columns 4 and 5
    views, px, py = torch.zeros(2, dtype=torch.long), torch.tensor([4.5, 1.5]), torch.tensor([4.5, 4.5])
    torch.testing.assert_close(edge_gate(flat, views, px, py, 0.05), torch.ones(2))
    # at column 4: (I(5) - I(3)) / 2 = 0.1 -> exp(-0.1 / 0.05); far from the edge: 1
    torch.testing.assert_close(edge_gate(step, views, px, py, 0.05), torch.tensor([math.exp(-2.0), 1.0]))


def test_color_inverse_covariance_recovers_a_known_covariance():
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[0.04, 0.01, 0.0], [0.01, 0.02, 0.0], [0.0, 0.0, 0.01]])
    colors = 0.5 + torch.randn(200_000, 3, generator=g) @ torch.linalg.cholesky(cov).T
    inv = color_inverse_covariance(colors.reshape(1, 400, 500, 3), None, 100_000, g)
    torch.testing.assert_close(inv, torch.linalg.inv(cov + 1e-4 * torch.eye(3)), rtol=0.05, atol=0.5)


def test_weighted_normal_smoothness_by_hand():
    a = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    b = torch.tensor([[0.0, 1, 0], [0.0, 1, 0]])  # 1 - cos = 1 for both pairs
    assert normal_smoothness_loss(a, b, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.5)
    assert normal_smoothness_loss(a, b).item() == pytest.approx(1.0)


def _sphere_batch(cams, res: int):
    """Pixels of view 0 whose rays hit the unit sphere, with the renderer outputs of that sphere."""
    rows, cols = torch.meshgrid(torch.arange(res) + 0.5, torch.arange(res) + 0.5, indexing="ij")
    px, py = cols.reshape(-1), rows.reshape(-1)
    cam_idx = torch.zeros_like(px, dtype=torch.long)
    o, d = cams.rays(cam_idx, px, py)
    b = (o * d).sum(-1)
    disc = b**2 - ((o * o).sum(-1) - 1.0)
    keep = disc > 0.05
    t = -b[keep] - disc[keep].sqrt()
    x = o[keep] + t[:, None] * d[keep]
    out = {"opacity": torch.ones(len(t), 1), "depth": t[:, None], "normal": x}
    return out, cam_idx[keep], px[keep], py[keep], o[keep], d[keep]


@pytest.mark.parametrize("view_dependent", [False, True])
def test_a_diffuse_point_keeps_its_weight_and_a_reflection_loses_it(view_dependent):
    res, cams = 32, _ring(12, 32)
    colors = torch.linspace(0.1, 0.9, 12) if view_dependent else torch.full((12,), 0.5)
    images = colors[:, None, None, None].expand(12, res, res, 3).contiguous()
    images = images + 0.02 * torch.arange(3)  # a tint, so the colour covariance is not singular
    split = Split(cams, images, None)
    rw = ReflectionWeights(ReflectionLossConfig(anomaly=True, views=11, smooth_weight=1.0), split, cams)
    out, cam_idx, px, py, o, d = _sphere_batch(cams, res)
    batch = PixelBatch(cam_idx, px, py, images[0, 0, 0].expand(len(px), 3), None)
    got = rw.weights(out, batch, o, d, torch.Generator().manual_seed(0))
    if view_dependent:
        # the views 30 and 60 degrees away see another colour (points near the silhouette facing no other view
        # keep weight 1)
        assert got.weight.median() < 0.5 and got.gate.median() > 0.5
    else:
        torch.testing.assert_close(got.weight, torch.ones_like(got.weight))
        torch.testing.assert_close(got.gate, torch.zeros_like(got.gate))


def test_reflection_terms_train(tiny_scene, tmp_path):
    """Both terms on from the first step: logged, finite, and the smoothness gradient reaches the SDF."""
    over = ["loss.reflection.anomaly=true", "loss.reflection.smooth_weight=1.0", "loss.reflection.start=0"]
    cfg = apply_overrides(preset_config("lumisurf"), TINY + over)
    run = RunDir(tmp_path / "refl")
    run.prepare_new(cfg, False, False)
    trainer = Trainer(cfg, run, scene=tiny_scene, progress=False)
    scalars = trainer.train_step()
    assert 0 < scalars["loss_reflect_weight"] <= 1 and math.isfinite(scalars["loss_reflect_smooth"])
    off = Trainer(replace(cfg, loss=replace(cfg.loss, reflection=ReflectionLossConfig())), run, tiny_scene, False)
    assert "loss_reflect_weight" not in off.train_step()


def test_nero_preset_trains_with_the_reflection_terms(tiny_scene, tmp_path):
    """The shiny-object preset has both terms on (deferred shading); lumisurf-seg and lumisurf have none."""
    cfg = preset_config("nero")
    assert cfg.loss.reflection.anomaly and cfg.loss.reflection.smooth_weight > 0
    assert cfg.model.shade_at == "surface"
    for other in ("lumisurf-seg", "lumisurf"):
        assert not ReflectionWeights.wanted(preset_config(other).loss.reflection)
    cfg = apply_overrides(cfg, TINY + ["loss.reflection.start=0", "model.nero.occ_points=16"])
    run = RunDir(tmp_path / "nero")
    run.prepare_new(cfg, False, False)
    scalars = Trainer(cfg, run, scene=tiny_scene, progress=False).train_step()
    assert 0 < scalars["loss_reflect_weight"] <= 1 and math.isfinite(scalars["loss_reflect_smooth"])
