"""Deferred shading (model.shade_at=surface): compositing by hand, one-hot equivalence, training, config errors."""

from __future__ import annotations

import math

import pytest
import torch
from test_train_smoke import TINY

from lumisurf.config import apply_overrides
from lumisurf.errors import ConfigError
from lumisurf.models.deferred import composite_surface, deferred_foreground
from lumisurf.models.surface import RenderState
from lumisurf.models.surface_io import build_model
from lumisurf.presets import preset_config
from lumisurf.renderers.volume import accumulate
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer


def test_composite_surface_by_hand():
    weights = torch.tensor([[0.25, 0.5, 0.25], [0.0, 0.0, 0.0]])
    pts = torch.tensor([[[1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]], [[0.0, 1, 0], [0.0, 2, 0], [0.0, 3, 0]]])
    grad = torch.tensor([[[0.0, 0, 1], [0.0, 0, 2], [0.0, 0, 3]]]).expand(2, 3, 3)
    feat = torch.arange(6, dtype=torch.float32).reshape(1, 3, 2).expand(2, 3, 2)
    x, n, f = composite_surface(weights, pts, grad, feat)
    torch.testing.assert_close(x, torch.tensor([[2.0, 0, 0], [0.0, 1, 0]]))  # no weight: the first sample
    torch.testing.assert_close(n[0], torch.tensor([0.0, 0, 2]))
    torch.testing.assert_close(f[0], torch.tensor([2.0, 3.0]))  # 0.25 [0, 1] + 0.5 [2, 3] + 0.25 [4, 5]


def test_one_sample_rays_shade_as_the_per_sample_path():
    """With all of a ray's weight on one sample, deferred = per-sample compositing."""
    g = torch.Generator().manual_seed(0)
    k, s = 5, 4
    pts, grad, feat = torch.randn(k, s, 3, generator=g), torch.randn(k, s, 3, generator=g), torch.randn(k, s, 2)
    weights = torch.zeros(k, s)
    weights[torch.arange(k), torch.tensor([0, 3, 1, 2, 3])] = torch.tensor([0.9, 0.5, 1.0, 0.2, 0.7])
    o, d = torch.zeros(k, 3), torch.nn.functional.normalize(torch.randn(k, 3, generator=g), dim=-1)

    def shade(x, n, view, f, cam):
        return {"rgb": torch.sigmoid(x + n.sum(-1, keepdim=True) * f[:, :1] + view)}

    _, _, rgb = deferred_foreground(shade, weights, pts, grad, feat, o, d)
    per_sample = shade(pts.reshape(-1, 3), grad.reshape(-1, 3), d.repeat_interleave(s, 0), feat.reshape(-1, 2), None)
    torch.testing.assert_close(rgb, accumulate(weights, per_sample["rgb"].reshape(k, s, 3)))


@pytest.mark.parametrize("preset", ["lumisurf", "nero"])
def test_deferred_training_steps(preset, tiny_scene, tmp_path):
    cfg = apply_overrides(preset_config(preset), TINY + ["model.shade_at=surface", "model.nero.occ_points=16"])
    run = RunDir(tmp_path / preset)
    run.prepare_new(cfg, False, False)
    trainer = Trainer(cfg, run, scene=tiny_scene, progress=False)
    # the colour alone moves the geometry: its gradient reaches the SDF through the weights and the normal
    o, d = trainer.cameras.rays(torch.zeros(64, dtype=torch.long), torch.full((64,), 12.0), torch.linspace(2, 22, 64))
    out = trainer.model(o, d, torch.zeros(64, 3), RenderState(1.0, False, None))
    out["rgb"].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.sdf.parameters())
    trainer.optimizer.zero_grad(set_to_none=True)
    scalars = trainer.train_step()
    assert math.isfinite(scalars["loss"])
    if preset == "nero":
        assert "albedo" in out and out["albedo"].shape == (64, 3)
        assert math.isfinite(scalars["loss_occ"])


def test_deferred_refuses_mixed_heads():
    cfg = apply_overrides(preset_config("lumisurf-seg"), ["model.shade_at=surface"])
    with pytest.raises(ConfigError, match="shade_at"):
        build_model(cfg.model, cfg.sampler, True)
