"""The divergence guard, checkpoints that always exist, and resume that continues exactly where it stopped."""

import math

import pytest
import torch

from lumisurf.config import apply_overrides
from lumisurf.presets import preset_config
from lumisurf.train.checkpoint import read_checkpoint, save_checkpoint
from lumisurf.train.guard import DivergenceGuard, TrainingDiverged, batch_coverage
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer
from lumisurf.train_config import GuardConfig

TINY = [
    "train.batch_rays=32",
    "train.val_every=0",
    "train.ckpt_every=0",
    "train.max_steps=6",
    "train.finalize=false",
    "train.device=cpu",
    "sampler.n_samples=8",
    "sampler.n_importance=8",
    "sampler.up_sample_steps=2",
    "model.background.n_samples=4",
    "model.sdf.grid.implementation=torch",
    "train.guard.snapshot_every=2",
    "train.guard.check_every=1",
]


def _trainer(tmp_path, scene, extra=(), resume=False, preset="lumisurf"):
    cfg = apply_overrides(preset_config(preset), [*TINY, *extra])
    run = RunDir(tmp_path)
    run.prepare_new(cfg, force=not resume, resume=resume)
    return Trainer(cfg, run, scene=scene, progress=False)


# ----------------------------------------------------------------------------- the guard alone


def test_batch_coverage_hand_values():
    opacity = torch.tensor([[0.9], [0.8], [0.1], [0.2]])
    mask = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    assert batch_coverage(opacity, mask) == pytest.approx(1 / 3)  # 1 shared of 3 in the union
    assert batch_coverage(opacity, None) == pytest.approx(0.5)
    assert math.isnan(batch_coverage(torch.zeros(4, 1), torch.zeros(4, 1)))  # nothing to judge
    assert math.isnan(batch_coverage(torch.zeros(0, 1), None))


def test_guard_signals():
    g = DivergenceGuard(GuardConfig(check_every=1, inv_s_checks=3, inv_s_drop=0.5))
    assert g.observe(1, {"loss": 0.1, "inv_s": 20.0, "coverage": 0.6}) is None
    assert "nan" in g.observe(2, {"loss": float("nan")})
    # inv_s below half its maximum on three checks in a row (one recovery in between resets the count)
    assert g.observe(3, {"loss": 0.1, "inv_s": 9.0}) is None and not g.healthy
    assert g.observe(4, {"loss": 0.1, "inv_s": 15.0}) is None and g.healthy
    assert g.observe(5, {"loss": 0.1, "inv_s": 9.0}) is None and g.observe(6, {"loss": 0.1, "inv_s": 8.0}) is None
    assert "inv_s fell to 7.0 from 20.0" in g.observe(7, {"loss": 0.1, "inv_s": 7.0})
    g = DivergenceGuard(GuardConfig())
    for step in range(30):
        assert g.observe(step, {"loss": 0.1, "coverage": 0.8}) is None
    reasons = [g.observe(30 + k, {"loss": 0.1, "coverage": 0.0}) for k in range(40)]
    assert any(r and "vanishing" in r for r in reasons)
    assert "emptied" in g.check_occupancy(0.0) and g.check_occupancy(0.2) is None
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight[0, 0] = float("inf")
    assert g.check_parameters(lin) == "parameters are not finite"
    assert DivergenceGuard(GuardConfig(enabled=False)).observe(1, {"loss": float("nan")}) is None


def test_guard_restores_the_older_snapshot_then_gives_up():
    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    g = DivergenceGuard(GuardConfig(max_recoveries=1))
    with torch.no_grad():
        lin.weight.fill_(1.0)
    g.snapshot(10, lin, opt, {"tag": "a"})
    with torch.no_grad():
        lin.weight.fill_(2.0)
    g.snapshot(20, lin, opt, {"tag": "b"})
    with torch.no_grad():
        lin.weight.fill_(float("nan"))
    step, extra = g.recover(25, "test", lin, opt)
    assert step == 10 and extra == {"tag": "a"} and torch.all(lin.weight == 1.0) and g.recoveries == 1
    with torch.no_grad():
        lin.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="diverged 2 times"):
        g.recover(40, "again", lin, opt)
    assert torch.all(lin.weight == 1.0)  # the healthy state is in place for the final checkpoint


# ----------------------------------------------------------------------------- inside training


def test_training_recovers_from_a_failing_step(tiny_scene, tmp_path, monkeypatch, capsys):
    tr = _trainer(tmp_path / "run", tiny_scene)
    real = Trainer.train_step
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 4:  # e.g. an empty tensor deep in a kernel
            raise RuntimeError("cannot reshape tensor of 0 elements into shape [0, -1, 2]")
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", flaky)
    result = tr.fit()
    out = capsys.readouterr()
    assert "recovered from divergence at step 4: RuntimeError" in out.out + out.err
    assert result.steps == 6 and tr.guard.recoveries == 1 and tr.lr_schedule.scale == 0.5
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_a_run_that_keeps_diverging_stops_with_a_usable_checkpoint(tiny_scene, tmp_path, monkeypatch):
    from lumisurf.cli import main

    def nan_step(self):
        with torch.no_grad():
            next(self.model.parameters()).fill_(float("nan"))
        return {"loss": float("nan"), "psnr": float("nan")}

    monkeypatch.setattr(Trainer, "train_step", nan_step)
    run = tmp_path / "diverged"
    code = main(
        [
            "train",
            "--out",
            str(run),
            "--no-progress",
            "--max-steps",
            "20",
            *TINY[:-1],
            "data.synthetic_views=4",
            "data.synthetic_resolution=16",
            "train.max_steps=20",
            "eval.mesh_resolution=32",
        ]
    )
    assert code == 2
    state = read_checkpoint(run / "ckpt" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["extra"]["guard"]["recoveries"] == 3
    monkeypatch.undo()
    assert main(["extract", str(run)]) == 0 and (run / "mesh.ply").exists()


def test_atomic_checkpoint_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    lin = torch.nn.Linear(2, 1)
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, lin, None, 1, 1.0)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, lin, None, 2, 2.0)
    monkeypatch.undo()
    assert read_checkpoint(path)["step"] == 1


@pytest.mark.parametrize("preset", ["lumisurf", "nero"])
def test_interrupt_then_resume_matches_an_uninterrupted_run(tiny_scene, tmp_path, monkeypatch, preset):
    straight = _trainer(tmp_path / "a", tiny_scene, preset=preset)
    straight.fit()
    interrupted = _trainer(tmp_path / "b", tiny_scene, preset=preset)
    real = Trainer.guarded_step

    def stop_at_3(self):
        if self.step == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "guarded_step", stop_at_3)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert read_checkpoint(tmp_path / "b" / "ckpt" / "last.pt")["step"] == 3
    monkeypatch.undo()
    resumed = _trainer(tmp_path / "b", tiny_scene, resume=True, preset=preset)
    resumed.fit(resume=True)
    assert resumed.step == 6 and resumed.progress_value == straight.progress_value
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_old_run_configs_are_migrated_to_progress_fractions(tmp_path):
    import yaml

    from lumisurf.config import load_config, to_dict

    old = to_dict(preset_config("lumisurf"))
    for section, new in (("optim", "warmup"), ("train", "anneal_until"), ("schedule", "grid_levels_until")):
        del old[section][new]
    old["optim"]["warmup_steps"], old["train"]["anneal_end"] = 500, 2000
    old["schedule"]["grid_steps_per_level"] = 250  # 8 -> 16 levels over 2000 of 20000 steps
    old["loss"]["segmentation"]["consistency_views"] = 4  # a key that was never read, dropped
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    cfg = load_config(path)
    assert cfg.optim.warmup == pytest.approx(0.025) and cfg.train.anneal_until == pytest.approx(0.1)
    assert cfg.schedule.grid_levels_until == pytest.approx(0.1)
    assert cfg.schedule.grid_levels_until == pytest.approx(preset_config("lumisurf").schedule.grid_levels_until)


def test_old_run_configs_get_per_sampler_sections(tmp_path):
    import yaml

    from lumisurf.config import load_config, to_dict

    old = to_dict(preset_config("lumisurf"))
    for section in ("soft_mining", "context", "quadtree"):
        del old["sampler"][section]
    old["sampler"].update(soft_mining_alpha=0.8, soft_mining_warmup=7, context_fraction=0.3, quadtree_every=9)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    cfg = load_config(path)
    assert (cfg.sampler.soft_mining.alpha, cfg.sampler.soft_mining.warmup) == (0.8, 7)
    assert cfg.sampler.context.fraction == 0.3 and cfg.sampler.quadtree.every == 9
    assert cfg.sampler.quadtree.max_depth == 5  # keys the old file did not have keep their defaults
