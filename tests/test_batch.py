"""``lumisurf batch``: the spec, the in-process runner, and local Ray with a worker killed mid-training."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lumisurf.errors import ConfigError, LumisurfError
from lumisurf.jobs.batch.runner import run_batch
from lumisurf.jobs.batch.spec import load_batch

# a NeuS small enough for a few seconds of training on one core
TINY = [
    "data.synthetic_resolution=16",
    "data.synthetic_views=6",
    "train.batch_rays=64",
    "train.val_every=0",
    "model.sdf.hidden=64",
    "model.sdf.layers=4",
    "model.sdf.skip_in=[2]",
    "model.sdf.feature_dim=32",
    "model.color.hidden=32",
    "model.background.hidden=32",
    "sampler.n_samples=16",
    "sampler.n_importance=16",
    "eval.chamfer_samples=2000",
]


def _spec(tmp_path: Path, scenes: list[dict], **top) -> Path:
    spec = {
        "device": "cpu",
        "checkpoint_minutes": 0.01,
        "pipeline": {"preset": "neus", "max_steps": 8, "mesh_resolution": 24, "overrides": TINY},
        "scenes": scenes,
        **top,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _corrupt_dataset(tmp_path: Path) -> Path:
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "transforms_train.json").write_text('{"frames": [')
    return bad


def _table(root: Path) -> dict[str, dict]:
    with open(root / "summary.csv") as f:
        return {r["scene"]: r for r in csv.DictReader(f)}


def test_spec_expands_globs_merges_overrides_and_rejects_mistakes(tmp_path):
    for name in ("obj_b", "obj_a"):
        (tmp_path / "data" / name).mkdir(parents=True)
    path = _spec(
        tmp_path, [{"name": "cat", "data": "data/obj_*", "max_steps": 3}, {"overrides": ["data.synthetic_views=4"]}]
    )
    spec, plans = load_batch(path)
    assert [p.name for p in plans] == ["cat-obj_a", "cat-obj_b", "builtin-2"]
    assert plans[0].data == str((tmp_path / "data" / "obj_a").resolve()) and plans[0].pipeline.max_steps == 3
    assert plans[2].pipeline.overrides == tuple(TINY) + ("data.synthetic_views=4",) and plans[2].pipeline.max_steps == 8
    assert plans[0].fingerprint() != plans[1].fingerprint()
    assert replace(plans[0], checkpoint_minutes=9.0).fingerprint() == plans[0].fingerprint()
    assert replace(plans[0], seed=1).fingerprint() != plans[0].fingerprint()
    bad = [
        ([{"name": "x", "color": 1}], "unknown config key"),
        ([{"name": "x"}, {"name": "x"}], "used twice"),
        ([{"data": "data/none_*"}], "no folder matches"),
        ([{"relight": ["env.hdr"]}], "relight needs the material stage"),
        ([{"preset": "nope"}], "scene 'builtin-1'"),
        ([{"overrides": ["train.bogus=1"]}], "unknown config key 'train.bogus'"),
    ]
    for scenes, message in bad:
        with pytest.raises(ConfigError, match=message):
            load_batch(_spec(tmp_path, scenes))
    with pytest.raises(ConfigError, match="unknown config key"):
        load_batch(_spec(tmp_path, [{}], retry=3))


def test_in_process_batch_reports_a_corrupt_dataset_and_skips_finished_scenes(tmp_path, capsys):
    path = _spec(tmp_path, [{"name": "tiny"}, {"name": "broken", "data": str(_corrupt_dataset(tmp_path))}])
    with pytest.raises(LumisurfError, match="1 of 2 scene"):
        run_batch(path, tmp_path / "out", local=True, progress=False)
    rows = _table(tmp_path / "out")
    assert rows["tiny"]["status"] == "ok" and float(rows["tiny"]["psnr"]) > 10 and rows["tiny"]["steps"] == "8"
    assert float(rows["tiny"]["chamfer"]) > 0 and rows["tiny"]["this_run"] == "ran"
    assert (
        rows["broken"]["status"].startswith("failed: cannot read")
        and "transforms_train.json" in rows["broken"]["status"]
        and rows["broken"]["attempts"] == "1"
    )
    assert (tmp_path / "out" / "scenes" / "tiny" / "run" / "mesh.ply").exists()
    assert "| tiny | ok | ran |" in (tmp_path / "out" / "summary.md").read_text()
    # the same spec again: the finished scene is skipped, the broken one tried (and reported) again
    with pytest.raises(LumisurfError, match="broken: failed"):
        run_batch(path, tmp_path / "out", local=True, progress=False)
    assert _table(tmp_path / "out")["tiny"]["this_run"] == "skipped (finished before)"
    assert "1 finished before (skipped), 1 to run" in capsys.readouterr().out


def _kill_mid_training(status_path: Path, ckpt: Path, timeout: float = 240.0) -> int:
    """SIGKILL the worker training the scene once it has a checkpoint; returns the checkpoint's step."""
    import torch

    end = time.time() + timeout
    while time.time() < end:
        try:
            state = json.loads(status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = {}
        if state.get("status") == "running" and "train" not in (state.get("stages") or []) and ckpt.exists():
            step = torch.load(ckpt, weights_only=True)["step"]
            if step > 0:
                os.kill(int(state["pid"]), signal.SIGKILL)
                return step
        time.sleep(0.1)
    raise AssertionError(f"the scene never reached a checkpoint: {status_path.read_text()}")


def test_local_ray_batch_resumes_a_killed_worker_from_its_checkpoint(tmp_path):
    pytest.importorskip("ray", reason="Ray is in the 'cluster' extra")
    scenes = [
        {"name": "one"},
        {"name": "two", "overrides": ["data.synthetic_views=8"]},
        {"name": "killed", "max_steps": 60, "overrides": ["train.ckpt_every=2"]},
        {"name": "broken", "data": str(_corrupt_dataset(tmp_path))},
    ]
    path, out = _spec(tmp_path, scenes, retries=1), tmp_path / "out"
    cmd = [sys.executable, "-m", "lumisurf", "batch", str(path), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        folder = out / "scenes" / "killed"
        killed_at = _kill_mid_training(folder / "status.json", folder / "run" / "ckpt" / "last.pt")
        log = proc.communicate(timeout=400)[0]
    finally:
        proc.kill()
    assert proc.returncode == 2, log[-3000:]  # the broken scene fails the batch, after the others finished
    rows = _table(out)
    assert all(rows[n]["status"] == "ok" and rows[n]["psnr"] for n in ("one", "two", "killed")), rows
    assert rows["killed"]["attempts"] == "2" and int(rows["killed"]["resumed_from"]) >= killed_at > 0
    assert rows["killed"]["steps"] == "60"
    assert rows["broken"]["status"].startswith("failed: cannot read") and rows["broken"]["attempts"] == "1"
    assert "as Ray tasks" in log and "resumed from step" in log


def test_the_shipped_example_spec_is_valid():
    spec, plans = load_batch(Path(__file__).resolve().parents[1] / "benchmarks" / "specs" / "batch_example.yaml")
    assert [p.name for p in plans] == ["builtin-40views", "builtin-24views", "builtin-96px-nero"]
    assert plans[2].pipeline.material is not None and plans[2].pipeline.preset == "nero" and spec.retries == 2


def test_resources_no_node_has_are_an_error_locally_and_a_warning_on_a_cluster(capsys, monkeypatch):
    from lumisurf.jobs.batch import runner

    with pytest.raises(LumisurfError, match="1 GPU.* per task but the cluster has 0; no scene could ever start"):
        runner.check_resources({"CPU": 2.0}, 1, 1, autoscaling=False)
    runner.check_resources({"CPU": 2.0}, 4, 0, autoscaling=True)
    assert "4 CPU(s) per task but the cluster has 2" in capsys.readouterr().out
    runner.check_resources({"CPU": 2.0, "GPU": 1.0}, 2, 1, autoscaling=False)  # fits: silent
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    with pytest.raises(LumisurfError, match=r"--address: Ray is not installed: pip install 'lumisurf\[cluster\]'"):
        runner.import_ray(required=True)
    assert runner.import_ray(required=False) is None


def test_eta_uses_each_running_scenes_own_rate_and_the_median_for_pending_ones():
    from lumisurf.jobs.batch.runner import eta_seconds

    now = 1000.0
    assert eta_seconds([{"status": "pending"}], now) is None  # nothing to go on
    fast = {"status": "running", "progress": 0.5, "started": now - 10}  # 10 s more
    slow = {"status": "running", "progress": 0.25, "started": now - 30}  # 90 s more
    assert eta_seconds([fast, slow], now) == pytest.approx(90.0)  # the slowest running scene bounds it
    done = {"status": "ok", "wall_s": 40.0}
    # 2 slots: (10 + 90 + 2 pending x median(40, 20, 120) = 40) / 2 = 90
    assert eta_seconds([fast, slow, done, {"status": "pending"}, {"status": "pending"}], now) == pytest.approx(90.0)
    assert eta_seconds([done, {"status": "pending"}], now) == pytest.approx(40.0)
    assert eta_seconds([done], now) == 0.0
