"""A 2-step training smoke of every preset on a tiny analytic scene, and the CLI end to end."""

import json
import math

import pytest
import torch

from lumisurf.cli import main
from lumisurf.config import apply_overrides
from lumisurf.kinds import build_trainer
from lumisurf.models.surface import RenderState
from lumisurf.presets import PRESETS, preset_config
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer

TINY = [
    "train.batch_rays=32",
    "train.val_every=0",
    "train.ckpt_every=0",
    "train.max_steps=2",
    "train.finalize=false",
    "train.device=cpu",
    "sampler.n_samples=8",
    "sampler.n_importance=8",
    "sampler.up_sample_steps=2",
    "model.background.n_samples=4",
]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_two_steps_every_preset(preset, tiny_scene, tmp_path):
    cfg = apply_overrides(preset_config(preset), TINY)
    if cfg.model.kind == "voxels":
        cfg = apply_overrides(cfg, ["voxels.model.init_level=4"])  # 16^3 cells before the visual hull
    run = RunDir(tmp_path / preset)
    run.prepare_new(cfg, force=False, resume=False)
    trainer = build_trainer(cfg, run, scene=tiny_scene, progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    result = trainer.fit()
    assert result.steps == 2 and run.ckpt_path.exists()
    moved = [not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters())]
    assert any(moved)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    trainer.validate()
    assert list((run.root / "val").glob("*.png"))
    _viewer_renders(run.root, tiny_scene)


@pytest.mark.parametrize(
    "variant",
    [
        ["sampler.render_samples=all"],
        ["sampler.coarse_sdf=occupancy", "sampler.occupancy_explore=0.5"],
        ["model.sdf.experts.enabled=true", "model.sdf.experts.coarse_levels=4"],
        ["model.sdf.grid.implementation=warp"],
        ["model.sdf.grid.implementation=torch"],
    ],
)
def test_two_steps_speed_levers(variant, tiny_scene, tmp_path):
    """Every sampling / kernel lever of the default preset, on or off, trains (a few steps past the first
    occupancy refresh, so the cache and the partial refresh run)."""
    cfg = apply_overrides(
        preset_config("lumisurf"), TINY + ["train.max_steps=3", "sampler.occupancy_every=1", *variant]
    )
    run = RunDir(tmp_path / "lever")
    run.prepare_new(cfg, force=False, resume=False)
    trainer = build_trainer(cfg, run, scene=tiny_scene, progress=False)
    assert trainer.fit().steps == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    scalars = (run.root / "scalars.csv").read_text().splitlines()
    if "model.sdf.experts.enabled=true" in variant:
        assert "loss_expert" in scalars[0] and "expert_coarse" in scalars[0]


def _viewer_renders(root, scene):
    """What `lumisurf view` draws from a run of the preset: each view mode, band by band, and the preview mesh."""
    from dataclasses import replace

    from lumisurf.jobs.restore import load_run
    from lumisurf.jobs.viewer.server import preview_mesh, render_image, view_modes

    loaded = load_run(root, "cpu")
    cams = scene.split("train").cameras.subset([0])
    s = 12 / cams.width
    cams = replace(cams, fx=cams.fx * s, fy=cams.fy * s, cx=cams.cx * s, cy=cams.cy * s, width=12, height=12)
    for mode in view_modes(loaded):
        img = render_image(loaded.model, loaded.cfg, cams, mode, lambda: False, loaded.device, bands=3)
        assert img.shape == (12, 12, 3) and img.dtype.name == "uint8", mode
    assert render_image(loaded.model, loaded.cfg, cams, "rgb", lambda: True, loaded.device) is None  # cancelled
    mesh = preview_mesh(loaded.model, loaded.device, 24)
    assert mesh is None or len(mesh.visual.vertex_colors) == len(mesh.vertices)


def test_background_nerf_path(tiny_scene, tmp_path):
    """Datasets without masks use the NeRF++ background: the step must train it too."""
    from dataclasses import replace

    split = tiny_scene.splits["train"]
    scene = tiny_scene.with_splits({"train": replace(split, masks=None), "test": tiny_scene.splits["test"]})
    cfg = apply_overrides(preset_config("neus"), TINY)
    run = RunDir(tmp_path / "bg")
    run.prepare_new(cfg, False, False)
    trainer = Trainer(cfg, run, scene=scene, progress=False)
    assert trainer.model.background is not None
    scalars = trainer.train_step()
    assert math.isfinite(scalars["loss"]) and "loss_mask" not in scalars
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.background.parameters())


def test_normal_smoothness_term_trains_the_sdf(tiny_scene, tmp_path):
    """loss.normal_smooth_weight > 0: the term is logged and its gradient reaches the SDF."""
    cfg = apply_overrides(
        preset_config("lumisurf"), TINY + ["loss.normal_smooth_weight=1.0", "model.sdf.grid.implementation=torch"]
    )
    run = RunDir(tmp_path / "ns")
    run.prepare_new(cfg, False, False)
    trainer = Trainer(cfg, run, scene=tiny_scene, progress=False)
    # a column of pixels through the middle of view 0: most rays hit the object
    o, d = trainer.cameras.rays(
        torch.zeros(64, dtype=torch.long), torch.full((64,), 16.0), torch.linspace(4.0, 28.0, 64)
    )
    out = trainer.model(o, d, torch.zeros(3), RenderState(1.0, False, None))
    term = trainer._normal_smoothness(out, o, d)
    assert term.requires_grad and math.isfinite(term.item()) and term.item() >= 0
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.sdf.parameters())
    assert math.isfinite(trainer.train_step()["loss_normal_smooth"])


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    args = (
        [
            "train",
            "--out",
            str(out),
            "--max-steps",
            "3",
            "--device",
            "cpu",
            "--no-progress",
            "data.synthetic_resolution=16",
            "data.synthetic_views=5",
            "eval.mesh_resolution=32",
            "eval.chamfer_samples=2000",
            "train.finalize=false",
        ]
        + TINY[:2]
        + TINY[6:]
    )
    assert main(args) == 0
    assert (out / "config.yaml").exists() and (out / "ckpt" / "last.pt").exists()
    assert (out / "scalars.csv").read_text().startswith("step,")
    assert main(["extract", str(out), "--resolution", "32"]) == 0
    assert (out / "mesh.ply").exists()
    assert main(["render", str(out), "--split", "test"]) == 0
    assert sorted(p.name for p in (out / "renders" / "test").glob("*_normal.png"))
    assert main(["eval", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "chamfer", "normal_mae_deg", "mask_iou", "train_seconds", "steps"):
        assert key in metrics
    assert metrics["steps"] == 3 and metrics["psnr"] > 5 and metrics["chamfer"] > 0
    # outputs already written are only replaced with --force
    for cmd in (["extract", str(out), "--resolution", "32"], ["render", str(out)], ["eval", str(out)]):
        assert main(cmd) == 2
        assert "--force" in capsys.readouterr().err
    assert main(["extract", str(out), "--resolution", "32", "--force", "--keep-unseen"]) == 0
    # a new mesh: only the mesh metrics are recomputed, the image metrics are kept
    before = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**before, "psnr": 99.0}))
    assert main(["eval", str(out), "--force", "--mesh-only"]) == 0
    after = json.loads((out / "metrics.json").read_text())
    assert after["psnr"] == 99.0 and after["chamfer"] > 0 and after["steps"] == 3
    # an existing run is never overwritten without --force
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    # --resume continues from the checkpoint
    assert main(args[:3] + ["--max-steps", "4", "--resume"] + args[5:]) == 0
    assert torch.load(out / "ckpt" / "last.pt", weights_only=True)["step"] == 4


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "train.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key" in err and "Traceback" not in err
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["eval", str(tmp_path)]) == 2
