"""Training-loop configuration (``Config.schedule``, ``Config.optim``, ``Config.train``): schedules, optimiser,
budget, checkpoints and the divergence guard. Kept apart from ``lumisurf.config`` only for size; these are
nested sections of the one typed :class:`lumisurf.config.Config`.

Every schedule length is a fraction of the one training progress in [0, 1] (``lumisurf.train.progress``):
elapsed / budget under ``--max-minutes``, step / max_steps under ``--max-steps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ScheduleConfig:
    """Schedules over the training progress p in [0, 1]."""

    grid_start_levels: int = 16  # coarse-to-fine: levels active at p = 0 (>= n_levels: all)
    grid_levels_until: float = 0.0  # all levels active from this progress on (0: all from the start)
    fd_eps_mode: Literal["exp", "grid"] = "exp"  # exp: start -> end geometrically over p; grid: finest active cell
    fd_eps_start: float = 5e-3
    fd_eps_end: float = 5e-4
    # Stage I phases (lumisurf.train.phases): none, or A geometry / B grid / C materials / D EM / E end
    phases: Literal["none", "abcde"] = "none"
    phase_ends: tuple[float, ...] = (0.1, 0.3, 0.7, 1.0)  # ends of A, B, C, D as fractions of the progress
    em_every: int = 0  # phase D: alternate heads/geometry and assignment every k steps (0: no EM)
    assignment_lr_scale: float = 0.1  # phases C/D: the assignment field's learning rate factor


@dataclass
class OptimConfig:
    lr: float = 5e-4
    warmup: float = 1 / 60  # linear warm-up over this fraction of the progress ...
    warmup_min_steps: int = 100  # ... and never over fewer steps, whatever the budget
    lr_min_factor: float = 0.05  # cosine decay to lr * lr_min_factor at progress 1
    weight_decay: float = 0.0


@dataclass
class GuardConfig:
    """Divergence guard (``lumisurf.train.guard``): detect a collapsing run, roll back, lower the lr."""

    enabled: bool = True
    check_every: int = 10  # steps between health checks (parameters finite, inv_s, batch coverage)
    snapshot_every: int = 50  # steps between in-memory snapshots of a healthy state (two are kept)
    max_recoveries: int = 3  # one more divergence stops the run (with the best checkpoint saved)
    lr_factor: float = 0.5  # each recovery multiplies the learning rate by this
    inv_s_drop: float = 0.5  # inv_s below this fraction of its running maximum ...
    inv_s_checks: int = 3  # ... on this many checks in a row is a collapse
    coverage_drop: float = 0.1  # batch coverage (mask IoU, or rays with opacity > 0.5) below this x its peak
    min_occupied: float = 1e-5  # occupancy grid refresh below this fraction: the surface has vanished


@dataclass
class TrainConfig:
    max_steps: int = 300_000
    max_minutes: float | None = None
    batch_rays: int = 512
    anneal_until: float = 1 / 6  # NeuS cos-anneal ratio reaches 1 at this progress
    val_every: int = 500
    val_downscale: int = 2
    ckpt_every: int = 1000  # steps between checkpoints ...
    ckpt_every_minutes: float = 1.0  # ... or minutes of training, whichever comes first
    log_every: int = 10
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    chunk_rays: int = 1024  # rays per forward when rendering full images
    # after training: extract the mesh, render the test views, evaluate. None (auto): only for the
    # built-in scene; dataset runs are finished with `lumisurf extract` / `lumisurf eval`.
    finalize: bool | None = None
    guard: GuardConfig = field(default_factory=GuardConfig)
