"""The ``lumisurf train`` job: build the config, train, then (optionally) extract, render and evaluate."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lumisurf.config import Config, apply_overrides, ignored_settings
from lumisurf.data.load import load_config_scene
from lumisurf.errors import LumisurfError
from lumisurf.jobs.evaluate import evaluate_run, format_table
from lumisurf.jobs.extract import extract_run
from lumisurf.jobs.restore import load_run
from lumisurf.kinds import check_data_parallel, model_kind, train
from lumisurf.models.surface_io import background_kind
from lumisurf.presets import DEFAULT_PRESET, PRESETS, preset_config
from lumisurf.train.distributed import Distributed, init_distributed, shutdown
from lumisurf.train.run_dir import RunDir

DEFAULT_SYNTHETIC_MINUTES = 3.0  # the built-in scene trains for this long unless told otherwise


def build_train_config(
    data: str | None,
    preset: str | None,
    max_steps: int | None,
    max_minutes: float | None,
    device: str | None,
    seed: int | None,
    overrides: list[str],
) -> Config:
    cfg = preset_config(preset or DEFAULT_PRESET)
    cli = []
    if data is not None:
        cli.append(f"data.path={Path(data).resolve()}")
    if max_steps is not None:
        cli.append(f"train.max_steps={max_steps}")
    if max_minutes is not None:
        cli.append(f"train.max_minutes={max_minutes}")
    elif data is None and max_steps is None:
        cli.append(f"train.max_minutes={DEFAULT_SYNTHETIC_MINUTES}")
    if device is not None:
        cli.append(f"train.device={device}")
    if seed is not None:
        cli.append(f"train.seed={seed}")
    return apply_overrides(cfg, cli + list(overrides))


def ignored_note(cfg: Config) -> str | None:
    """One line naming the settings changed from the preset that the config's model kind does not read."""
    base = preset_config(cfg.preset) if cfg.preset in PRESETS else Config()
    ignored = ignored_settings(cfg, base, model_kind(cfg.model.kind).cls.config_sections)
    if not ignored:
        return None
    shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
    return f"note: model.kind={cfg.model.kind} (preset {cfg.preset}) does not read {shown}"


def default_out(cfg: Config) -> Path:
    name = Path(cfg.data.path).name if cfg.data.path else "synthetic"
    return Path("runs") / f"{name}-{cfg.preset}"


def train_job(
    cfg: Config,
    out: str | None,
    resume: bool,
    force: bool,
    progress: bool = True,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    viewer: tuple[str, int] | None = None,
    hooks: tuple = (),
) -> dict | None:
    """Train a run folder; with ``train.finalize`` also write mesh, renders and metrics. Returns a summary.
    ``viewer``: (host, port) of a live page of the training (:mod:`lumisurf.jobs.viewer.live`); ``hooks``:
    callables ``(loop, scalars)`` after every step (a batch task's progress).

    ``--resume`` keeps the saved config; only a step / time budget given on the command line
    (``max_steps``, ``max_minutes``) replaces the saved one.

    Under ``torchrun`` every rank calls this (data-parallel, :mod:`lumisurf.train.distributed`); rank 0 alone
    writes the run folder and returns the summary, the other ranks return None.
    """
    dist = init_distributed(cfg.train.device)
    try:
        return _train_job(cfg, out, resume, force, progress, max_steps, max_minutes, viewer, dist, hooks)
    finally:
        shutdown(dist)


def _train_job(
    cfg: Config,
    out: str | None,
    resume: bool,
    force: bool,
    progress: bool,
    max_steps: int | None,
    max_minutes: float | None,
    viewer: tuple[str, int] | None,
    dist: Distributed,
    hooks: tuple,
) -> dict | None:
    run = RunDir(Path(out) if out else default_out(cfg))
    if resume:
        cfg = run.load_config()
        if max_steps is not None:
            cfg.train.max_steps = max_steps
        cfg.train.max_minutes = max_minutes
    note = None if resume else ignored_note(cfg)
    if note and dist.is_main:
        print(note, file=sys.stderr)
    scene = load_config_scene(cfg.data)  # before the run folder is made: bad data leaves no half-made run
    # the saved config names the background model, so a run folder rebuilds its model without the dataset
    cfg.model.background.kind = background_kind(cfg.model.background.kind, scene.split("train").masks is not None)
    run.check_new(force, resume)
    check_data_parallel(cfg, dist.world_size)  # before rank 0 makes the run folder
    dist.barrier()  # every rank has read the saved config before rank 0 rewrites it
    live = _start_viewer(scene, viewer) if viewer and dist.is_main else None
    if dist.is_main:
        run.prepare_new(cfg, force=force, resume=resume)
    dist.barrier()
    try:
        result = train(
            cfg,
            run,
            resume=resume,
            progress=progress,
            scene=scene,
            hooks=tuple(hooks) + ((live.on_step,) if live else ()),
            dist=dist,
        )
    finally:
        if live:
            live.stop()
    # the ranks leave the process group together, before rank 0 finalizes: a rank tearing gloo down while its
    # peer still used the group aborted once (SIGABRT, "terminate called without an active exception")
    dist.barrier()
    shutdown(dist)
    if not dist.is_main:
        return None
    summary = {
        "run": str(run.root),
        "steps": result.steps,
        "train_seconds": round(result.train_seconds, 1),
        "last_batch_psnr": result.final_psnr,
        "ranks": dist.world_size,
    }
    finalize = cfg.train.finalize if cfg.train.finalize is not None else cfg.data.path is None
    if finalize:
        summary["metrics"] = finalize_run(run.root, progress=progress)
    return summary


def launch_ranks(cfg: Config, out: str | None, resume: bool, force: bool, nproc: int, argv: list[str]) -> int:
    """``lumisurf train --nproc N ...``: refuse what every rank would refuse (a taken run folder, a batch N ranks
    cannot split, sparse voxels), then run the same command line as N ranks on this machine (``torchrun
    --standalone``) and wait. Returns 0; LumisurfError naming the rank that failed first."""
    if nproc < 1:
        raise LumisurfError(f"--nproc must be >= 1, got {nproc}")
    run = RunDir(Path(out) if out else default_out(cfg))
    run.check_new(force, resume)
    check_data_parallel(run.load_config() if resume else cfg, nproc)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # ranks share the cores
    rest = [a for k, a in enumerate(argv) if not (a.startswith("--nproc") or (k and argv[k - 1] == "--nproc"))]
    try:
        torchrun(get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "lumisurf", *rest]))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise LumisurfError(
            f"rank {rank} of {nproc} stopped with exit code {failure.exitcode} (its message is "
            f"above); the other ranks were stopped"
        ) from None
    return 0


def _start_viewer(scene, where: tuple[str, int]):
    from lumisurf.jobs.viewer.live import TrainingViewer  # lazy: the viewer extra (viser) only with --viewer

    live = TrainingViewer(scene, *where)
    print(
        f"lumisurf train: live page at http://{where[0]}:{live.server.get_port()} (stops with the training; "
        f"afterwards: lumisurf view RUN)",
        flush=True,
    )
    return live


def finalize_run(root: Path, progress: bool = True) -> dict:
    """Extract the mesh, render the test split and evaluate (the end of the main job)."""

    loaded = load_run(root)
    extract_run(loaded, progress=progress, force=True)  # the run just (re)trained: outputs are refreshed
    metrics = evaluate_run(loaded, progress=progress, force=True)
    print(format_table(metrics))
    print(f"run folder: {root}  (mesh.ply, renders/test, metrics.json, val/, scalars.csv)")
    return json.loads(json.dumps(metrics))
