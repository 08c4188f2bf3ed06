"""The sparse-voxel presets through the CLI: train (with pruning/subdivision), extract, render, eval, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lumisurf.cli import main

TINY = [
    "--device",
    "cpu",
    "--no-progress",
    "data.synthetic_resolution=24",
    "data.synthetic_views=6",
    "eval.mesh_resolution=32",
    "eval.chamfer_samples=2000",
    "train.finalize=false",
    "train.val_every=0",
    "voxels.model.init_level=4",
    "voxels.structure.adapt_every=0.2",
    "voxels.structure.adapt_min_steps=1",
    "voxels.structure.adapt_until=0.9",
    "voxels.model.sh_band_every=0.2",
]


@pytest.mark.parametrize("preset", ["svraster", "svraster-sdf"])
def test_voxel_preset_end_to_end(preset, tmp_path, capsys):
    out = tmp_path / preset
    # density starts at 0 (not SVRaster's -10: transparent) so that 5 steps leave a level set to mesh
    extra = ["voxels.model.geo_init=0.0"] if preset == "svraster" else []
    args = ["train", "--preset", preset, "--out", str(out), "--max-steps", "5"] + TINY + extra
    assert main(args) == 0
    log = capsys.readouterr()
    assert "subdivided" in log.out + log.err  # the layout changed during the run
    for cmd in (["extract", str(out)], ["render", str(out)], ["eval", str(out)]):
        assert main(cmd) == 0, cmd
    assert (out / "voxels.pt").exists() and (out / "voxels.ply").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["psnr"] > 5 and metrics["chamfer"] > 0
    assert main(args[:5] + ["--max-steps", "7", "--resume"] + args[7:]) == 0
    assert torch.load(out / "ckpt" / "last.pt", weights_only=True)["step"] == 7
    warm = tmp_path / "warm"  # a new run started from the exported voxel set
    assert (
        main(
            [
                "train",
                "--preset",
                preset,
                "--out",
                str(warm),
                "--max-steps",
                "2",
                "voxels.model.init_from=" + str(out / "voxels.pt"),
            ]
            + TINY
            + extra
        )
        == 0
    )
    assert torch.load(warm / "ckpt" / "last.pt", weights_only=True)["model"]["geo"].shape[0] > 0


def _tiny_voxel_trainer(tmp_path, preset: str = "svraster", extra: tuple = ()):
    from lumisurf.config import apply_overrides
    from lumisurf.presets import preset_config
    from lumisurf.train.run_dir import RunDir
    from lumisurf.train.voxel_trainer import VoxelTrainer

    overrides = [a for a in TINY if "=" in a] + [
        "train.device=cpu",
        "train.max_steps=12",
        "train.guard.snapshot_every=2",
        "train.guard.check_every=1",
    ]
    cfg = apply_overrides(preset_config(preset), overrides + list(extra))
    (tmp_path / "ckpt").mkdir(parents=True)
    return VoxelTrainer(cfg, RunDir(tmp_path), progress=False)


def test_guard_rolls_back_a_nan_across_a_layout_change(tmp_path, monkeypatch):
    """Weights turned NaN right after a subdivision: the guard restores the snapshot (its older voxel layout
    included), halves the learning rates and the run goes on to a finite checkpoint."""
    trainer = _tiny_voxel_trainer(tmp_path, extra=("voxels.structure.adapt_every=0.25",))
    real_step = trainer.train_step

    def poisoned_step():
        scalars = real_step()
        if trainer.step == 6:  # the 7th step (guarded_step increments after train_step)
            with torch.no_grad():
                trainer.model.geo.fill_(float("nan"))
            scalars["loss"] = float("nan")
        return scalars

    monkeypatch.setattr(trainer, "train_step", poisoned_step)
    result = trainer.fit()
    assert result.steps == 12 and trainer.guard.recoveries == 1 and trainer.lr_scale == 0.5
    assert trainer.optimizer.param_groups[0]["lr"] == 0.5 * trainer.vc.train.lr_geo
    assert torch.isfinite(trainer.model.geo).all() and len(trainer.max_weight) == len(trainer.model.tree)
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert torch.isfinite(state["model"]["geo"]).all()


def test_sdf_regularizers_enter_the_loss(tmp_path):
    trainer = _tiny_voxel_trainer(
        tmp_path, "svraster-sdf", ("voxels.loss.twist_weight=0.1", "voxels.loss.smooth_weight=0.2")
    )
    scalars = trainer.guarded_step()
    assert scalars["loss_eikonal"] > 0 and scalars["loss_twist"] >= 0 and scalars["inv_s"] > 0
    assert scalars["loss_smooth"] > 0 and len(trainer.pairs) > 0  # the sphere SDF curves across faces
    assert math.isclose(
        scalars["loss"],
        scalars["loss_rgb"]
        + 0.1 * scalars["loss_mask"]
        + 0.01 * scalars["loss_eikonal"]
        + 0.1 * scalars["loss_twist"]
        + 0.2 * scalars["loss_smooth"],
        rel_tol=1e-4,
    )


def test_image_terms_enter_the_loss(tmp_path):
    """SSIM, distortion, the median-depth normal term and a GT depth term (a fake constant depth map) are
    weighted into the loss, and the step still updates the corners."""
    extra = (
        "voxels.loss.ssim_weight=0.02",
        "voxels.loss.distortion_weight=0.1",
        "voxels.loss.distortion_from=0",
        "voxels.loss.depth_normal_weight=0.01",
        "voxels.loss.depth_normal_from=0",
        "voxels.loss.depth_weight=0.05",
        "voxels.model.geo_init=0.0",
    )
    trainer = _tiny_voxel_trainer(tmp_path, extra=extra)
    split = trainer.train_split
    split.depths = torch.full(split.images.shape[:3], 2.5)
    before = trainer.model.geo.detach().clone()
    scalars = trainer.guarded_step()
    for k in ("ssim", "distortion", "normal", "depth"):
        assert math.isfinite(scalars[f"loss_{k}"]) and scalars[f"loss_{k}"] > 0, k
    total = (
        scalars["loss_rgb"]
        + 0.1 * scalars["loss_mask"]
        + 0.02 * scalars["loss_ssim"]
        + 0.1 * scalars["loss_distortion"]
        + 0.01 * scalars["loss_normal"]
        + 0.05 * scalars["loss_depth"]
    )
    assert math.isclose(scalars["loss"], total, rel_tol=1e-4)
    assert not torch.equal(before, trainer.model.geo.detach())


def test_gradient_clipping_bounds_the_norm(tmp_path, monkeypatch):
    trainer = _tiny_voxel_trainer(tmp_path, extra=("voxels.train.grad_clip=1e-6", "voxels.model.geo_init=0.0"))
    norms = []
    real = trainer.optimizer.step

    def step(*a, **k):
        grads = [p.grad for g in trainer.optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.stack([g.norm() for g in grads]).norm()))
        return real(*a, **k)

    monkeypatch.setattr(trainer.optimizer, "step", step)
    trainer.guarded_step()
    assert norms and norms[0] <= 1e-6 * (1 + 1e-4)


def test_size_scaled_geometry_steps(tmp_path):
    """With lr_geo_by_size, a corner of the starting voxels moves as Adam says; after a subdivision the
    corners of the children (half the edge) move at most half as far as Adam's rate."""
    trainer = _tiny_voxel_trainer(tmp_path, extra=("voxels.train.lr_geo_by_size=true", "voxels.model.geo_init=0.0"))
    assert torch.allclose(trainer._corner_scale(), torch.ones(trainer.model.tree.n_corners))
    split = torch.arange(len(trainer.model.tree)) % 2 == 0  # every other voxel: many of them in view
    tree, remap = trainer.model.tree.subdivide(split)
    trainer.model.restructure(tree, remap, trainer.optimizer)
    trainer._reset_weight_stats()
    scale = trainer._corner_scale()
    assert set(scale.unique().tolist()) == {0.5, 1.0}
    before = trainer.model.geo.detach().clone()
    trainer.guarded_step()
    moved = (trainer.model.geo.detach() - before).abs()
    assert moved[scale == 0.5].max() > 0 and moved[scale == 0.5].max() <= 0.5 * 1.05 * trainer.vc.train.lr_geo


def test_extra_views_fill_up_to_the_count_evenly():
    from lumisurf.train.voxel_trainer import extra_views

    views = extra_views(80, {1, 2, 3}, 24)
    assert len(views) == 21 and not {1, 2, 3} & set(views) and views[0] == 0 and views[-1] > 70
    assert extra_views(10, set(), 24) == list(range(10)) and extra_views(80, set(range(30)), 24) == []


def test_inv_s_floor_follows_its_schedule(tmp_path):
    trainer = _tiny_voxel_trainer(
        tmp_path, "svraster-sdf", ("voxels.model.inv_s_final=800", "voxels.model.inv_s_until=0.5")
    )
    floors = []
    for _ in range(7):
        trainer.guarded_step()
        floors.append(float(trainer.model.inv_s_floor))
    assert floors[0] == 50.0 and floors[-1] == 800.0  # progress 6 / 12 = inv_s_until
    assert floors[3] == pytest.approx(50.0 * 16.0**0.5)  # geometric: progress 3 / 12 is half-way
    assert float(trainer.model.inv_s.detach()) >= 800.0


def test_deferred_nero_shading_trains_resumes_and_renders(tmp_path):
    out = tmp_path / "nero"
    args = [
        "train",
        "--preset",
        "svraster-sdf",
        "--out",
        str(out),
        "--max-steps",
        "3",
        "voxels.model.shading=nero",
        "model.nero.hidden=16",
        "model.nero.layers=2",
        "model.nero.weight_norm=false",
    ] + TINY
    assert main(args) == 0
    assert main(args[:5] + ["--max-steps", "4", "--resume"] + args[7:]) == 0
    state = torch.load(out / "ckpt" / "last.pt", weights_only=True)
    assert state["step"] == 4 and any(k.startswith("shading.") for k in state["model"])
    assert main(["render", str(out)]) == 0
    seg = tmp_path / "seg"  # the lumisurf-seg mixture, deferred the same way
    assert (
        main(
            [
                "train",
                "--preset",
                "svraster-sdf",
                "--out",
                str(seg),
                "--max-steps",
                "2",
                "voxels.model.shading=segmented",
                "model.assignment.head_hidden=16",
                "model.nero.hidden=16",
            ]
            + TINY
        )
        == 0
    )
    assert main(["eval", str(seg)]) == 0
    rows = (seg / "scalars.csv").read_text().splitlines()
    assert "loss_entropy" in rows[0].split(",")  # the mixture's entropy term (loss.segmentation)
    bad = [
        "train",
        "--preset",
        "svraster",
        "--out",
        str(tmp_path / "bad"),
        "--max-steps",
        "1",
        "voxels.model.shading=nero",
    ] + TINY
    assert main(bad) != 0  # density voxels have no SDF normals to shade with


def test_warm_start_from_a_neural_field_run(tmp_path):
    """extract --voxels turns a field run's SDF into a band of voxels that svraster-sdf starts from."""
    field = tmp_path / "field"
    assert (
        main(
            [
                "train",
                "--out",
                str(field),
                "--max-steps",
                "2",
                "--device",
                "cpu",
                "--no-progress",
                "data.synthetic_resolution=16",
                "data.synthetic_views=5",
                "train.finalize=false",
                "train.batch_rays=32",
                "sampler.n_samples=8",
                "sampler.n_importance=8",
                "sampler.up_sample_steps=2",
                "model.background.n_samples=4",
            ]
        )
        == 0
    )
    assert main(["extract", str(field), "--voxels", "4"]) == 0
    from lumisurf.voxels.io import load_voxels

    voxels = load_voxels(field / "voxels.pt")
    assert voxels.mode == "sdf" and 0 < len(voxels.tree) < 16**3
    assert voxels.geo.min() < 0 < voxels.geo.max()  # the band straddles the surface
    warm = tmp_path / "warm"
    assert (
        main(
            [
                "train",
                "--preset",
                "svraster-sdf",
                "--out",
                str(warm),
                "--max-steps",
                "2",
                f"voxels.model.init_from={field / 'voxels.pt'}",
            ]
            + TINY
        )
        == 0
    )
    assert main(["extract", str(warm), "--voxels", "4"]) == 2  # a voxel run is not converted again


def test_geometry_learning_rate_decays_on_the_progress_clock(tmp_path):
    trainer = _tiny_voxel_trainer(tmp_path, extra=("voxels.train.lr_geo=0.02", "voxels.train.lr_geo_final=0.002"))
    trainer.step = 6  # half of train.max_steps = 12
    trainer.update_schedules()
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert math.isclose(lrs["geo"], (0.02 * 0.002) ** 0.5, rel_tol=1e-6)
    assert math.isclose(lrs["sh0"], trainer.vc.train.lr_sh0)  # the other groups keep theirs


@pytest.mark.parametrize("flag", ["voxels.model.soft_sigma=0.5", "voxels.model.soft_temperature=0.05"])
def test_soft_variants_train(tmp_path, flag):
    trainer = _tiny_voxel_trainer(tmp_path, extra=(flag, "voxels.model.geo_init=0.0"))
    assert trainer.model.soft is not None and trainer.model.soft.active
    before = trainer.model.geo.detach().clone()
    for _ in range(2):
        scalars = trainer.guarded_step()
    assert math.isfinite(scalars["loss"]) and not torch.equal(before, trainer.model.geo.detach())
