"""Stage II runs in the one training loop: a kill and ``--resume`` end where an uninterrupted fit ends, a NaN
step is rolled back by the guard, and a finished fit is not replaced without --force."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny_runs import tiny_stage1_run

from lumisurf.errors import LumisurfError
from lumisurf.jobs.material import material_files, material_job
from lumisurf.train.checkpoint import read_checkpoint
from lumisurf.train.material_stage import MaterialTrainer
from lumisurf.train.run_dir import RunDir

STAGE2 = [
    "batch_rays=32",
    "light_samples=4",
    "grid.implementation=torch",
    "render_spp=1",
    "render_light_samples=4",
    "init_steps=0",
]


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    """A 2-step Stage I run of the built-in scene with its mesh extracted."""
    return tiny_stage1_run(tmp_path_factory.mktemp("stage1") / "run")


def _copy(run, dest):
    shutil.copytree(run, dest)
    return dest


def _fit(run, **kw):
    return material_job(run, list(STAGE2), steps=6, progress=False, export=False, **kw)


def test_stage2_kill_then_resume_matches_an_uninterrupted_fit(stage1_run, tmp_path, monkeypatch):
    straight = _copy(stage1_run, tmp_path / "a")
    _fit(straight)
    interrupted = _copy(stage1_run, tmp_path / "b")
    real = MaterialTrainer.guarded_step

    def stop_at_3(self):
        if self.step == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(MaterialTrainer, "guarded_step", stop_at_3)
    with pytest.raises(KeyboardInterrupt):
        _fit(interrupted)
    ckpt = material_files(RunDir(interrupted)).checkpoint
    assert read_checkpoint(ckpt)["step"] == 3 and not (interrupted / "material" / "material.pt").exists()
    monkeypatch.undo()
    with pytest.raises(LumisurfError, match="--resume"):
        _fit(interrupted)  # a started fit is not silently restarted
    summary = material_job(interrupted, [], steps=6, progress=False, export=False, resume=True)
    assert summary["steps"] == 6
    a = torch.load(straight / "material" / "material.pt", weights_only=True)
    b = torch.load(interrupted / "material" / "material.pt", weights_only=True)
    for part in ("field", "lighting"):
        for name, value in a[part].items():
            assert torch.equal(value, b[part][name]), f"{part}.{name}"


def test_stage2_guard_rolls_back_a_nan_step(stage1_run, tmp_path, monkeypatch, capsys):
    run = _copy(stage1_run, tmp_path / "c")
    real = MaterialTrainer.train_step

    def poisoned(self):
        scalars = real(self)
        if self.step == 3:
            with torch.no_grad():
                next(self.field.parameters()).fill_(float("nan"))
        return scalars

    monkeypatch.setattr(MaterialTrainer, "train_step", poisoned)
    summary = _fit(run)
    printed = capsys.readouterr()
    assert summary["steps"] == 6 and "recovered from divergence" in printed.out + printed.err
    state = torch.load(run / "material" / "material.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["field"].values())


def test_stage2_resume_refuses_overrides_and_a_missing_checkpoint(stage1_run, tmp_path):
    run = _copy(stage1_run, tmp_path / "d")
    with pytest.raises(LumisurfError, match="no Stage II checkpoint"):
        material_job(run, [], resume=True, progress=False, export=False)
    _fit(run)
    with pytest.raises(LumisurfError, match="overrides"):
        material_job(run, ["lr=0.1"], resume=True, progress=False, export=False)
    with pytest.raises(LumisurfError, match="--force"):
        _fit(run)
