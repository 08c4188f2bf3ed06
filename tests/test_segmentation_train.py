"""Segmentation wired into Stage I: the mixture shading, phase-gated losses, EM, named optimizer groups."""

from __future__ import annotations

import math

import pytest
import torch

from lumisurf.config import apply_overrides
from lumisurf.data.load import load_config_scene
from lumisurf.presets import preset_config
from lumisurf.shading.segmented import SegmentedShading
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer

TINY = [
    "model.sdf.grid.implementation=torch",
    "data.synthetic_views=4",
    "data.synthetic_resolution=24",
    "train.batch_rays=128",
    "train.val_every=0",
    "train.max_steps=8",
    "train.log_every=1",
    "model.assignment.lift.points=2000",
    "model.assignment.lift.fit_steps=20",
]


def _trainer(tmp_path, extra=()):
    cfg = apply_overrides(preset_config("lumisurf-seg"), [*TINY, *extra])
    run = RunDir(tmp_path / "run")
    run.prepare_new(cfg, force=False, resume=False)
    return Trainer(cfg, run, scene=load_config_scene(cfg.data), progress=False)


def test_segmented_shading_mixture_and_ranges():
    cfg = preset_config("lumisurf-seg").model
    cfg.assignment.grid.implementation = "torch"
    shading = SegmentedShading(cfg, feature_dim=15)
    n = 64
    x, nrm, v = torch.rand(n, 3) - 0.5, torch.randn(n, 3), torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
    out = {k: v_.detach() for k, v_ in shading(x, nrm, v, torch.randn(n, 15)).items()}
    assert out["rgb"].shape == (n, 3) and out["probs"].shape == (n, 2) and out["head_rgb"].shape == (n, 2, 3)
    assert torch.allclose(out["probs"].sum(-1), torch.ones(n), atol=1e-5)
    assert float(out["rgb"].min()) >= 0 and float(out["rgb"].max()) <= 1
    # the mixture is the probability-weighted sum of the heads (in linear light)
    mixed = (out["probs"][..., None] * out["head_rgb"]).sum(1)
    from lumisurf.data.color_space import linear_to_srgb

    assert torch.allclose(linear_to_srgb(mixed), out["rgb"], atol=1e-5)
    for key in ("albedo", "metallic", "roughness"):
        assert float(out[key].min()) >= 0 and float(out[key].max()) <= 1


def test_named_groups_cover_every_parameter(tmp_path):
    tr = _trainer(tmp_path)
    groups = tr.model.param_groups(tr.cfg)
    names = {g["name"] for g in groups}
    assert {"sdf", "variance", "assignment", "heads", "shading"} <= names
    n_grouped = sum(p.numel() for g in groups for p in g["params"])
    assert n_grouped == sum(p.numel() for p in tr.model.parameters())


def test_phase_c_turns_on_segmentation_losses_and_trains_the_assignment(tmp_path):
    # phases A, B end at step 0, C runs the whole training: every segmentation term is live
    tr = _trainer(
        tmp_path,
        [
            "schedule.phase_ends=[0.0,0.0,1.0,1.0]",
            "loss.segmentation.em_weight=1.0",
            "model.assignment.init=kmeans",
            "loss.segmentation.smoothness_weight=0.1",
            "loss.segmentation.material_range_weight=0.1",
            "loss.segmentation.sparsity_weight=0.1",
            "loss.segmentation.metal_prior_weight=1.0",
        ],
    )
    assert tr.warm_maps is not None and tr.warm_maps.shape[-1] == 2  # k-means soft maps of the train views
    before = [p.detach().clone() for p in tr.model.color.assignment.parameters()]
    seen: dict[str, float] = {}
    for _ in range(3):
        tr.update_schedules()
        seen.update(tr.train_step())
        tr.step += 1
    for key in (
        "loss_entropy",
        "loss_boundary",
        "loss_consistency",
        "loss_energy",
        "loss_warm_start",
        "loss_smoothness",
        "loss_material_range",
        "loss_sparsity",
        "loss_metal_prior",
    ):
        assert key in seen and math.isfinite(seen[key]) and seen[key] >= 0, (key, seen.get(key))
    assert "loss_em" not in seen  # EM is a phase-D term
    lrs = {g["name"]: g["lr"] for g in tr.optimizer.param_groups}
    assert lrs["assignment"] > 0
    after = list(tr.model.color.assignment.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_metal_prior_hand_values():
    from lumisurf.train.segmentation_step import metal_prior_loss

    probs = torch.tensor([[0.8, 0.2], [0.3, 0.7]], requires_grad=True)  # heads (specular, lambert)
    loss = metal_prior_loss(probs, ("specular", "lambert"), torch.tensor([1.0, 0.0]))
    assert float(loss.detach()) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2, rel=1e-6)
    loss.backward()
    assert torch.allclose(probs.grad[:, 0], torch.tensor([-1 / 0.8 / 2, 1 / 0.7 / 2]))
    assert torch.allclose(probs.grad[:, 1], torch.zeros(2))  # only the view-dependent heads' sum counts
    for heads in (("lambert", "subsurface"), ("specular", "transmission")):  # no split: no signal
        zero = metal_prior_loss(probs, heads, torch.ones(2))
        assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_pretrain_head_renders_alone_until_the_assignment_trains(tmp_path):
    tr = _trainer(tmp_path, ["schedule.phase_ends=[0.5,0.5,1.0,1.0]", "model.assignment.pretrain_head=specular"])
    tr.update_schedules()  # phase A
    assert tr.model.color.solo == 0
    scalars = tr.train_step()
    assert scalars["loss"] == scalars["loss"]
    tr.step = 4  # progress 4 / 8 = 0.5
    tr.update_schedules()  # phase C: the mixture
    assert tr.model.color.solo is None
    shading = tr.model.color
    shading.solo = 1
    n = 16
    x, nrm = torch.rand(n, 3) - 0.5, torch.randn(n, 3)
    v = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
    out = shading(x, nrm, v, torch.randn(n, tr.model.sdf.feature_dim))
    assert torch.equal(out["probs"], torch.tensor([[0.0, 1.0]]).expand(n, 2))
    from lumisurf.errors import ConfigError

    with pytest.raises(ConfigError, match="pretrain_head"):
        _trainer(tmp_path / "bad", ["model.assignment.pretrain_head=transmission"])


def test_phase_a_freezes_the_assignment_and_d_runs_em(tmp_path):
    tr = _trainer(tmp_path, ["schedule.phase_ends=[1.0,1.0,1.0,1.0]"])
    tr.update_schedules()
    scalars = tr.train_step()
    assert {g["name"]: g["lr"] for g in tr.optimizer.param_groups}["assignment"] == 0.0
    assert not any(k in scalars for k in ("loss_entropy", "loss_consistency"))
    tr = _trainer(tmp_path / "d", ["schedule.phase_ends=[0.0,0.0,0.0,1.0]", "schedule.em_every=1"])
    tr.update_schedules()  # D is entered at step 0
    tr.step = 1  # odd EM block: only the assignment trains, against the E-step posterior
    tr.update_schedules()
    scalars = tr.train_step()
    assert "loss_em" in scalars
    lrs = {g["name"]: g["lr"] for g in tr.optimizer.param_groups}
    assert lrs["assignment"] > 0 and lrs["sdf"] == 0.0


def test_segmented_run_extract_eval_vis(tmp_path):
    """A 3-step lumisurf-seg run: per-vertex material probabilities/ids, id maps and consistency in eval,
    and both vis pictures."""
    import json

    import trimesh

    from lumisurf.cli import main

    run = tmp_path / "seg"
    common = [
        "model.sdf.grid.implementation=torch",
        "model.assignment.grid.implementation=torch",
        "data.synthetic_views=4",
        "data.synthetic_resolution=24",
        "train.batch_rays=64",
        "train.val_every=0",
        "eval.mesh_resolution=32",
        "eval.chamfer_samples=2000",
        "train.finalize=false",
    ]
    assert (
        main(["train", "--preset", "lumisurf-seg", "--max-steps", "3", "--out", str(run), "--no-progress", *common])
        == 0
    )
    assert main(["extract", str(run)]) == 0
    ply = trimesh.load(run / "mesh_materials.ply", process=False)
    names = ply.metadata["_ply_raw"]["vertex"]["data"].dtype.names
    assert {"material_prob_0", "material_prob_1", "material_id", "roughness", "albedo_r"} <= set(names)
    data = ply.metadata["_ply_raw"]["vertex"]["data"]
    assert abs(float((data["material_prob_0"] + data["material_prob_1"]).mean()) - 1.0) < 1e-5
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["seg_reprojection_iou"] <= 1.0 and metrics["seg_reprojection_variance"] >= 0
    assert any(p.name.endswith("_matid.png") for p in (run / "renders" / "test").iterdir())
    assert main(["vis", "seg-reprojection", str(run)]) == 0 and (run / "vis" / "seg_reprojection.png").exists()
    assert main(["vis", "hash-features", str(run), "--resolution", "32"]) == 0
    assert (run / "vis" / "hash_features.png").stat().st_size > 1000
