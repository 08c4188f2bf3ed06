"""Data-parallel training (``lumisurf train --nproc N``, gloo on CPU): N ranks equal one rank, only rank 0
writes, and a checkpoint resumes with another number of ranks."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from lumisurf.data.pixel_sampling.base import PixelBatch
from lumisurf.errors import ConfigError
from lumisurf.jobs.train import build_train_config, train_job
from lumisurf.train.distributed import SINGLE, Distributed, from_environment

# perturb off: the rays are the same whatever the ranks, and so is every sample along them
TINY = [
    "data.synthetic_resolution=16",
    "data.synthetic_views=4",
    "train.batch_rays=64",
    "train.finalize=false",
    "train.log_every=1",
    "train.val_every=0",
    "sampler.perturb=false",
]


def test_shares_split_the_batch_evenly_in_rank_order():
    assert [Distributed(r, 4).share(64) for r in range(4)] == [
        slice(0, 16),
        slice(16, 32),
        slice(32, 48),
        slice(48, 64),
    ]
    assert SINGLE.share(7) == slice(0, 7)
    with pytest.raises(ConfigError, match="divisible by the 3 ranks"):
        Distributed(0, 3).share(64)


def test_one_rank_collectives_are_identities(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert from_environment() is SINGLE and SINGLE.is_main and not SINGLE.enabled
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([1.0, 2.0, 3.0])
    SINGLE.average_gradients([p])
    assert p.grad.tolist() == [1.0, 2.0, 3.0]
    assert SINGLE.mean_values([1.5, float("inf")], torch.device("cpu")) == [1.5, float("inf")]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert from_environment() == Distributed(1, 2, 0) and not from_environment().is_main


def test_a_batch_share_keeps_every_field():
    b = PixelBatch(torch.arange(6), torch.arange(6.0), torch.arange(6.0) + 10, torch.rand(6, 3), torch.rand(6, 1), None)
    part = b.rows(slice(2, 4))
    assert part.cam_idx.tolist() == [2, 3] and part.py.tolist() == [12.0, 13.0]
    assert torch.equal(part.rgb, b.rgb[2:4]) and torch.equal(part.mask, b.mask[2:4]) and part.weight is None


def _train(out, steps, resume=False):
    cfg = build_train_config(None, "neus", steps, None, "cpu", 0, TINY)
    return train_job(cfg, str(out), resume=resume, force=False, progress=False, max_steps=steps)


def _train_ranks(out, steps, nproc=2, resume=False):
    cmd = [
        sys.executable,
        "-m",
        "lumisurf",
        "train",
        "--nproc",
        str(nproc),
        "--preset",
        "neus",
        "--device",
        "cpu",
        "--max-steps",
        str(steps),
        "--out",
        str(out),
        "--no-progress",
        "--seed",
        "0",
        *TINY,
    ]
    done = subprocess.run(cmd + (["--resume"] if resume else []), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def _max_difference(run_a, run_b) -> float:
    a = torch.load(run_a / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(run_b / "ckpt" / "last.pt", weights_only=True)
    assert a["step"] == b["step"]
    return max((a["model"][k].double() - b["model"][k].double()).abs().max().item() for k in a["model"])


def test_two_ranks_with_half_batches_equal_one_rank_and_resume_with_another_rank_count(tmp_path):
    _train(tmp_path / "one", 5)
    stdout = _train_ranks(tmp_path / "two", 5)
    assert '"ranks": 2' in stdout and stdout.count('"steps": 5') == 1  # rank 0 alone reports
    assert _max_difference(tmp_path / "one", tmp_path / "two") < 1e-5  # same rays, averaged gradients
    with open(tmp_path / "two" / "scalars.csv") as f:  # only rank 0 logs: one row per step
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]
    assert not list((tmp_path / "two" / "ckpt").glob("*.tmp*"))
    # 3 steps on one rank, the last 2 on two ranks: the same parameters again
    _train(tmp_path / "mixed", 3)
    _train_ranks(tmp_path / "mixed", 5, resume=True)
    assert _max_difference(tmp_path / "one", tmp_path / "mixed") < 1e-5


def test_sparse_voxels_refuse_ranks_with_a_clear_message():
    from lumisurf.kinds import build_trainer
    from lumisurf.presets import preset_config

    with pytest.raises(ConfigError, match="sparse voxels train on one process"):
        build_trainer(preset_config("svraster"), None, dist=Distributed(0, 2))


def test_the_launcher_refuses_what_every_rank_would_before_starting_any(tmp_path, capsys):
    from lumisurf.cli import main

    out = tmp_path / "run"
    assert main(["train", "--nproc", "3", "--max-steps", "1", "--out", str(out)]) == 2  # 1024 rays, 3 ranks
    assert "train.batch_rays=1024 must be divisible by the 3 ranks" in capsys.readouterr().err and not out.exists()
    assert main(["train", "--nproc=2", "--preset", "svraster", "--max-steps", "1", "--out", str(out)]) == 2
    assert "sparse voxels train on one process" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    (out / "config.yaml").write_text("{}")
    assert main(["train", "--nproc", "2", "--max-steps", "1", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
