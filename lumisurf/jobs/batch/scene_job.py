"""One scene of a batch: train -> extract -> material -> relight -> eval, resumable, with its state on disk.

``OUT/scenes/<name>/`` holds ``run/`` (an ordinary run folder), ``log.txt`` (everything the jobs printed, every
attempt) and ``status.json``, the scene's record that the driver reads for progress and the table::

    {"status": "pending" | "running" | "ok" | "failed", "attempts": 2, "stages": ["train", "extract"],
     "resumed_from": [40], "progress": 0.53, "step": 80, "pid": 1234, "host": "node-3", "error": null, ...}

:func:`run_scene` is what a Ray task (or the in-process loop) runs. A task that starts again after its worker
was lost skips the stages already done and resumes training from ``run/ckpt/last.pt``. Errors of the input
(a bad dataset, a bad config: :class:`lumisurf.errors.LumisurfError`) and of the method end the scene as
``failed`` with the message; the task returns normally, so Ray does not retry them.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from lumisurf.errors import LumisurfError
from lumisurf.jobs.batch.spec import ScenePlan
from lumisurf.jobs.evaluate import evaluate_run
from lumisurf.jobs.extract import extract_run
from lumisurf.jobs.material import material_job
from lumisurf.jobs.relight import relight_job
from lumisurf.jobs.restore import load_run
from lumisurf.jobs.train import build_train_config, train_job
from lumisurf.train.checkpoint import read_checkpoint
from lumisurf.train.run_dir import RunDir


class SceneStatus:
    """``status.json`` of a scene folder, rewritten atomically (readers never see half a file)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / "status.json"

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write(self, **changes) -> dict:
        state = {**self.read(), **changes}
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"status.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(state, indent=1, default=str))
        os.replace(tmp, self.path)
        return state


def scene_folder(root: Path, plan: ScenePlan) -> Path:
    return Path(root) / "scenes" / plan.name


class ProgressHook:
    """A training step hook that records the step and the training progress in [0, 1] every few seconds."""

    def __init__(self, status: SceneStatus, every_seconds: float = 2.0):
        self.status, self.every, self.last = status, every_seconds, 0.0

    def __call__(self, loop, scalars: dict) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.status.write(
                step=loop.step, progress=round(loop.clock.progress(loop.step, loop.elapsed), 4), updated=time.time()
            )


def run_scene(plan: ScenePlan, root: str, threads: int | None = None) -> dict:
    """Run (or continue) one scene's pipeline; returns its final ``status.json``. Never raises for a failed
    scene; KeyboardInterrupt and the loss of the process leave it ``running`` with its checkpoint."""
    status = SceneStatus(scene_folder(Path(root), plan))
    prev = status.read()
    started = time.time()
    attempt = int(prev.get("attempts", 0)) + 1
    wall = float(prev.get("wall_s") or 0.0)
    if prev.get("status") == "running":  # the last attempt's process was lost: count its time to its last sign
        last = float(prev.get("started") or started)
        wall += max(0.0, float(prev.get("updated") or last) - last)
    status.write(
        name=plan.name,
        status="running",
        attempts=attempt,
        pid=os.getpid(),
        host=socket.gethostname(),
        started=started,
        error=None,
    )
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    with open(status.folder / "log.txt", "a") as log, redirect_stdout(log), redirect_stderr(log):
        print(
            f"=== {plan.name}: attempt {attempt} on {socket.gethostname()} (pid {os.getpid()}) at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} ===",
            flush=True,
        )
        try:
            metrics = _pipeline(plan, status)
            outcome = {"status": "ok", "metrics": metrics}
        except LumisurfError as exc:  # the input's fault: the message says what to mend
            outcome = {"status": "failed", "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 (a scene's failure must not end the batch)
            traceback.print_exc()
            outcome = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        print(f"=== {plan.name}: {outcome['status']} {outcome.get('error') or ''}", flush=True)
    return status.write(**outcome, wall_s=round(wall + time.time() - started, 1), finished=time.time())


def _pipeline(plan: ScenePlan, status: SceneStatus) -> dict:
    """The stages not done yet, in order; returns the metrics (``{}`` without eval)."""

    p, run = plan.pipeline, status.folder / "run"
    done = list(status.read().get("stages") or [])
    stages = [("train", lambda: _train(plan, run, status))]
    if p.extract:
        stages.append(
            ("extract", lambda: extract_run(load_run(run, plan.device), p.mesh_resolution, force=True, progress=False))
        )
    if p.material is not None:
        m = p.material
        stages.append(
            (
                "material",
                lambda: material_job(
                    run, list(m.overrides), m.steps, m.max_minutes, plan.device, force=True, progress=False
                ),
            )
        )
    for env in p.relight:
        stages.append(
            (
                f"relight:{Path(env).stem}",
                lambda env=env: relight_job(run, Path(env), "test", device=plan.device, force=True, progress=False),
            )
        )
    if p.eval:
        stages.append(("eval", lambda: evaluate_run(load_run(run, plan.device), progress=False, force=True)))
    for name, stage in stages:
        if name not in done:
            status.write(stage=name)
            stage()
            done.append(name)
            status.write(stages=done)
    return json.loads((run / "metrics.json").read_text()) if p.eval else {}


def _train(plan: ScenePlan, run: Path, status: SceneStatus) -> None:
    """Train from scratch, or resume from the run's checkpoint (a previous attempt's)."""

    p = plan.pipeline
    ckpt = RunDir(run).ckpt_path
    resume = ckpt.exists()
    if resume:
        step = int(read_checkpoint(ckpt)["step"])
        status.write(resumed_from=list(status.read().get("resumed_from") or []) + [step])
        print(f"resuming training from the checkpoint of step {step}", flush=True)
    cfg = build_train_config(
        plan.data, p.preset, p.max_steps, p.max_minutes, plan.device, plan.seed, plan.train_overrides()
    )
    train_job(
        cfg,
        str(run),
        resume=resume,
        force=not resume,
        progress=False,
        max_steps=p.max_steps,
        max_minutes=p.max_minutes,
        hooks=(ProgressHook(status),),
    )
