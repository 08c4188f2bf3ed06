"""Lifting Stage I materials into the assignment (``train/material_lift.py``) and the head pre-fit."""

from __future__ import annotations

import math

import pytest
import torch

from lumisurf.config import AssignmentConfig, apply_overrides
from lumisurf.data.load import load_config_scene
from lumisurf.fields.assignment import AssignmentField
from lumisurf.losses.segmentation import head_fit_loss, soft_cross_entropy
from lumisurf.presets import preset_config
from lumisurf.train.material_lift import cluster_to_heads, fit_assignment, smooth_features, specularity
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer


def _two_materials(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (albedo rgb, metallic, roughness) of a chrome half and a rough blue half, with noise."""
    g = torch.Generator().manual_seed(seed)
    metal = torch.tensor([0.9, 0.9, 0.9, 0.97, 0.08])
    blue = torch.tensor([0.15, 0.35, 0.75, 0.05, 0.85])
    feats = torch.cat([metal.expand(n, 5), blue.expand(n, 5)]) + 0.03 * torch.randn(2 * n, 5, generator=g)
    is_metal = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    return feats.clamp(0, 1), is_metal


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
@pytest.mark.parametrize("heads", [("specular", "lambert"), ("lambert", "specular")])
def test_clusters_go_to_heads_by_specularity(heads, method):
    feats, is_metal = _two_materials()
    targets, centres, sep = cluster_to_heads(feats, heads, "materials", method)
    spec = heads.index("specular")
    assert targets.shape == (400, 2) and torch.allclose(targets.sum(-1), torch.ones(400))
    assert bool((targets[is_metal, spec] > 0.99).all()) and bool((targets[~is_metal, spec] < 0.01).all())
    assert float(centres[spec, 3]) > 0.9 and float(centres[1 - spec, 4]) > 0.8  # metallic / roughness
    expected = float((torch.tensor([0.9, 0.9, 0.9, 0.97, 0.08]) - torch.tensor([0.15, 0.35, 0.75, 0.05, 0.85])).norm())
    assert sep == pytest.approx(expected, abs=0.02)


def test_lift_loss_and_head_fit_hand_values():
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(soft_cross_entropy(probs, targets)) == pytest.approx((math.log(2) - math.log(0.1)) / 2, rel=1e-6)
    head_rgb = torch.tensor([[[0.2, 0.2, 0.2], [0.5, 0.5, 0.5]], [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    target = torch.tensor([[0.4, 0.4, 0.4], [0.0, 0.0, 0.0]])
    opacity = torch.tensor([[1.0], [0.5]])  # the second ray is not on the surface: ignored
    assert float(head_fit_loss(head_rgb, opacity, target, skip=0)) == pytest.approx(0.1, abs=1e-6)
    assert float(head_fit_loss(head_rgb, opacity, target, skip=1)) == pytest.approx(0.2, abs=1e-6)
    assert float(head_fit_loss(head_rgb[:, :1], opacity, target, skip=0)) == 0.0  # no other head


def test_fit_assignment_learns_a_spatial_split():
    g = torch.Generator().manual_seed(0)
    field = AssignmentField(AssignmentConfig(enabled=True, backend="mlp", multires=2))
    x = torch.rand(2000, 3, generator=g) * 2 - 1
    upper = x[:, 2] > 0  # e.g. a sphere resting on a box
    targets = torch.stack([upper.float(), (~upper).float()], -1)
    fit_assignment(field, x, targets, steps=300, lr=1e-2, generator=g, batch=512)
    with torch.no_grad():
        pred = field.probs(x).argmax(-1)
    assert float((pred == (~upper).long()).float().mean()) > 0.95


def test_solo_head_keeps_other_heads_off_the_geometry():
    cfg = preset_config("lumisurf-seg").model
    cfg.assignment.grid.implementation = "torch"
    from lumisurf.shading.segmented import SegmentedShading

    shading = SegmentedShading(cfg, feature_dim=8)
    shading.solo = 0  # the specular head renders
    n = 32
    x = torch.rand(n, 3) - 0.5
    nrm = torch.randn(n, 3, requires_grad=True)
    feat = torch.randn(n, 8, requires_grad=True)
    v = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
    out = shading(x, nrm, v, feat)
    out["head_rgb"][:, 1].sum().backward()  # the Lambert head's own image
    for t in (nrm, feat):  # reached only through the (zero) gradient of the solo head's part of the stack
        assert t.grad is None or not bool(t.grad.any())
    assert all(p.grad is None for p in shading.assignment.parameters())  # not evaluated while solo
    assert any(p.grad is not None for p in shading.heads[1].parameters())


TINY_LIFT = [
    "model.sdf.grid.implementation=torch",
    "model.assignment.grid.implementation=torch",
    "data.synthetic_views=4",
    "data.synthetic_resolution=24",
    "train.batch_rays=128",
    "train.val_every=0",
    "train.max_steps=4",
    "model.assignment.init=materials",
    "model.assignment.pretrain_head=specular",
    "schedule.phase_ends=[0.25,0.5,1.0,1.0]",
    "model.assignment.lift.points=2000",
    "model.assignment.lift.fit_steps=20",
]


def _train_to_lift(tmp_path, overrides):
    cfg = apply_overrides(preset_config("lumisurf-seg"), TINY_LIFT + overrides)
    run = RunDir(tmp_path / "run")
    run.prepare_new(cfg, force=False, resume=False)
    tr = Trainer(cfg, run, scene=load_config_scene(cfg.data), progress=False)
    seen: dict[str, float] = {}
    for _ in range(4):
        tr.update_schedules()
        if tr.step < 2:
            assert tr.lift is None and tr.model.color.solo == 0
        seen.update(tr.train_step())
        tr.step += 1
    return cfg, tr, seen


def test_lift_runs_at_phase_c_in_training(tmp_path):
    tiny = TINY_LIFT
    cfg, tr, seen = _train_to_lift(tmp_path, [])
    assert tr.lift is not None and tr.lift.targets.shape[1] == 2
    # the built-in scene has one material: the clusters barely separate and every point gets one head
    assert tr.lift.separation < cfg.model.assignment.lift.min_separation
    assert tr.lift.targets.argmax(-1).unique().numel() == 1
    assert "loss_head_fit" in seen and "loss_lift" in seen
    from lumisurf.errors import ConfigError

    with pytest.raises(ConfigError, match="pretrain_head=specular"):
        bad = apply_overrides(preset_config("lumisurf-seg"), tiny + ["model.assignment.pretrain_head=lambert"])
        bad_run = RunDir(tmp_path / "bad")
        bad_run.prepare_new(bad, force=False, resume=False)
        Trainer(bad, bad_run, scene=load_config_scene(bad.data), progress=False)


def test_view_feature_clusters_rank_by_spread_and_smoothing_removes_outliers():
    g = torch.Generator().manual_seed(0)
    n = 300
    # chroma + scaled log spread: a grey mirror half (high spread) and a grey matte half (low spread)
    mirror = torch.tensor([0.33, 0.33, 0.33, 0.25 * math.log(1.0)])
    matte = torch.tensor([0.33, 0.33, 0.33, 0.25 * math.log(0.1)])
    feats = torch.cat([mirror.expand(n, 4), matte.expand(n, 4)]) + 0.01 * torch.randn(2 * n, 4, generator=g)
    targets, centres, _ = cluster_to_heads(feats, ("lambert", "specular"), "views")
    assert bool((targets[:n, 1] > 0.99).all()) and bool((targets[n:, 0] > 0.99).all())
    assert float(specularity(centres, "views")[1]) == pytest.approx(0.0, abs=0.01)
    # points on a line, one outlier value: averaging over neighbours spreads it thin
    pts = torch.stack([torch.linspace(0, 1, 50), torch.zeros(50), torch.zeros(50)], -1)
    f = torch.zeros(50, 1)
    f[25] = 1.0
    sm = smooth_features(pts, f, k=4, iterations=1)
    assert float(sm[25]) == pytest.approx(0.2) and float(sm[23]) == pytest.approx(0.2) and float(sm[0]) == 0.0
    assert torch.equal(smooth_features(pts, f, k=4, iterations=0), f)


def test_lift_on_view_features_with_the_mixture(tmp_path):
    """features=both (materials + what the photos show), feature smoothing and the Gaussian mixture in training."""
    _, tr, seen = _train_to_lift(
        tmp_path,
        [
            "model.assignment.lift.features=both",
            "model.assignment.lift.clustering=gmm",
            "model.assignment.lift.feature_smoothing=1",
        ],
    )
    assert tr.lift is not None and tr.lift.targets.shape[1] == 2 and tr.lift.centres.shape == (2, 9)
    assert bool(torch.isfinite(tr.lift.targets).all()) and "loss_lift" in seen
