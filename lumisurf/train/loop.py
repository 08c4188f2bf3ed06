"""The one training loop: guarded steps until the clock is done, logging, step hooks, periodic checkpoints and
validation, a checkpoint whatever ends the run (Ctrl-C, a kill, an error), rollback on divergence and resume.

Its clients (the neural-field :class:`lumisurf.train.trainer.Trainer`, the sparse-voxel
:class:`lumisurf.train.voxel_trainer.VoxelTrainer` and Stage II's
:class:`lumisurf.train.material_stage.MaterialTrainer`) implement the abstract methods below and set, in
their constructor, the attributes listed in :class:`TrainingLoop`. In a data-parallel run (``dist``,
:mod:`lumisurf.train.distributed`) every rank runs the loop on the same clock; only the main rank logs,
validates, runs the step hooks and writes checkpoints.

One NaN policy: a step whose loss is not finite never updates the weights (:func:`require_finite` raises in
the client's step); the guard counts that as a divergence and rolls back, or, with the guard off, the error
ends the run (with a checkpoint of the last finite weights).
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from lumisurf.train.checkpoint import load_training_state, save_checkpoint
from lumisurf.train.distributed import SINGLE
from lumisurf.train.guard import DivergenceGuard, parameters_finite
from lumisurf.train.logging import ScalarLogger
from lumisurf.train.progress import TrainingClock
from lumisurf.train_config import TrainConfig


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    final_psnr: float


@dataclass(frozen=True)
class LoopFiles:
    """Where a loop writes: its checkpoint, its scalars (CSV) and, optionally, TensorBoard events."""

    checkpoint: Path
    scalars: Path
    tensorboard: Path | None = None


def require_finite(loss: torch.Tensor | float, scalars: dict | None = None) -> None:
    """Raise FloatingPointError when ``loss`` is not finite: the step must not update the weights."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        shown = {k: round(v, 4) for k, v in (scalars or {}).items()}
        raise FloatingPointError(f"loss is not finite ({value}; {shown})")


class TrainingLoop(abc.ABC):
    """Set by the client's constructor: ``loop_cfg`` (a :class:`TrainConfig`: guard, log/val/checkpoint
    intervals), ``files`` (:class:`LoopFiles`), ``progress`` (show a bar), ``clock``
    (:class:`TrainingClock`), ``step``, ``elapsed`` (training seconds), ``model`` (an ``nn.Module``: what the
    guard snapshots and the checkpoint saves), ``optimizer``, ``guard`` (:class:`DivergenceGuard`) and
    ``device``."""

    loop_desc = "train"  # the progress bar's label
    rollback_noun = "weights"  # what a rollback restores, in its message
    step_hooks: tuple = ()  # callables (loop, scalars) after every step: the live viewer, batch progress
    dist = SINGLE  # this process's rank (a trainer of a data-parallel run sets its own)
    lr_scale = 1.0  # the guard's learning-rate factor so far (saved, and restored on resume)
    last_scalars: dict[str, float] = {}  # the last step's scalars, once fit() returned

    loop_cfg: TrainConfig
    files: LoopFiles
    progress: bool
    clock: TrainingClock
    step: int
    elapsed: float
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    guard: DivergenceGuard
    device: torch.device

    # ------------------------------------------------------------------ what a client implements
    @abc.abstractmethod
    def train_step(self) -> dict[str, float]:
        """One optimisation step; its scalars (``loss`` and ``psnr`` at least)."""

    @abc.abstractmethod
    def update_schedules(self) -> None:
        """Set every schedule from the clock's progress, before the step."""

    @abc.abstractmethod
    def set_lr_scale(self, scale: float) -> None:
        """Multiply every learning rate by ``scale`` (the guard's factor) from now on."""

    @abc.abstractmethod
    def extra_state(self) -> dict:
        """Everything besides weights, optimiser and guard that a resumed run needs (RNG, samplers, ...)."""

    @abc.abstractmethod
    def load_extra_state(self, extra: dict) -> None:
        """The inverse of :meth:`extra_state` (on resume; ``extra`` may come from an older checkpoint)."""

    def snapshot_extra(self) -> dict:
        """State besides weights and optimiser that a rollback must restore with them."""
        return {}

    def restore_snapshot_extra(self, extra: dict) -> None:
        """After a rollback: restore what :meth:`snapshot_extra` kept."""
        return None  # optional hook: nothing by default

    def validate(self) -> None:
        """Every ``val_every`` steps (main rank): a validation picture."""
        return None  # optional hook: nothing by default

    def postfix(self, scalars: dict) -> dict:
        """What the progress bar shows after the step count."""
        return {k: f"{scalars.get(k, math.nan):.4g}" for k in ("loss", "psnr")}

    def pre_step_reason(self) -> str | None:
        """A divergence seen before the step (None: healthy)."""
        return None

    def observe(self, scalars: dict) -> None:
        """Called with every step's scalars (after the step counter advanced)."""
        return None  # optional hook: nothing by default

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> TrainResult:
        if resume:
            self.resume()
        logger = ScalarLogger(self.files.scalars, self.files.tensorboard, append=resume) if self.dist.is_main else None
        bar = tqdm(
            total=self.clock.estimated_total_steps(self.step, self.elapsed),
            initial=self.step,
            disable=not self.progress,
            dynamic_ncols=True,
            desc=self.loop_desc,
            unit="it",
        )
        start = time.perf_counter() - self.elapsed
        self._last_save = self.elapsed
        scalars: dict[str, float] = {"psnr": float("nan")}
        try:
            while not self.clock.done(self.step, self.elapsed):
                scalars = self.guarded_step()
                self.elapsed = self.dist.max_value(time.perf_counter() - start, self.device)  # one clock
                if self.step % 100 == 0:  # progress bar only: keep the ETA honest
                    bar.total = self.clock.estimated_total_steps(self.step, self.elapsed)
                self._after_step(scalars, logger, bar)
        except KeyboardInterrupt:
            self.save()
            tqdm.write(
                f"interrupted at step {self.step}: checkpoint saved to {self.files.checkpoint}; continue with --resume"
            )
            raise
        except BaseException:
            self.save()  # a run never ends without a checkpoint (the healthy state if the weights are NaN)
            raise
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        self.save()
        self.last_scalars = scalars
        return TrainResult(self.step, self.elapsed, scalars.get("psnr", float("nan")))

    def guarded_step(self) -> dict[str, float]:
        """One training step under the divergence guard (``train/guard.py``): advances ``self.step``; on a
        divergence rolls back to a healthy snapshot and lowers the lr (raises TrainingDiverged when the
        recoveries are used up, with the healthy state restored)."""
        guard_cfg = self.loop_cfg.guard
        if not self.guard.snapshots:  # the starting state is the first healthy one
            self.guard.snapshot(self.step, self.model, self.optimizer, self.snapshot_extra())
        self.update_schedules()
        scalars: dict[str, float] = {"loss": float("nan"), "psnr": float("nan")}
        reason = self.pre_step_reason()
        if reason is None:
            try:
                scalars = self.train_step()
                reason = self.guard.observe(self.step + 1, scalars)
            except (RuntimeError, ValueError, FloatingPointError) as exc:
                if not guard_cfg.enabled:
                    raise
                reason = f"{type(exc).__name__} in the training step: {str(exc).splitlines()[0][:200]}"
        self.step += 1
        if reason is None and self.step % guard_cfg.check_every == 0:
            reason = self.guard.check_parameters(self.model)
        self.observe(scalars)
        if reason is not None:
            self.recover(reason)
        elif self.step % guard_cfg.snapshot_every == 0 and self.guard.healthy:
            self.guard.snapshot(self.step, self.model, self.optimizer, self.snapshot_extra())
        return scalars

    def recover(self, reason: str) -> None:
        """Roll back to the guard's healthy snapshot and go on with the learning rate x ``lr_factor``."""
        step = self.step
        _, extra = self.guard.recover(step, reason, self.model, self.optimizer)  # may raise TrainingDiverged
        self.lr_scale *= self.loop_cfg.guard.lr_factor
        self.set_lr_scale(self.lr_scale)
        self.restore_snapshot_extra(extra or {})
        tqdm.write(
            f"recovered from divergence at step {step}: {reason}; back to the {self.rollback_noun} of step "
            f"{self.guard.snapshots[0][0]}, learning rate x{self.lr_scale:.3g} "
            f"({self.guard.recoveries} of {self.loop_cfg.guard.max_recoveries} recoveries)"
        )

    def save(self) -> None:
        """Write the checkpoint (main rank only); if the live weights are not finite, the guard's healthy
        snapshot."""
        if not self.dist.is_main:
            return
        if not parameters_finite(self.model) and self.guard.snapshots:
            self.guard.restore(self.model, self.optimizer)
        extra = {**self.extra_state(), "guard": {"recoveries": self.guard.recoveries, "lr_scale": self.lr_scale}}
        save_checkpoint(self.files.checkpoint, self.model, self.optimizer, self.step, self.elapsed, extra)
        self._last_save = self.elapsed

    def resume(self) -> None:
        """Continue from the checkpoint: weights, optimiser, step, training seconds, guard and extra state."""
        self.step, self.elapsed, extra = load_training_state(
            self.files.checkpoint, self.model, self.optimizer, self.device
        )
        guard = extra.get("guard", {"recoveries": 0, "lr_scale": 1.0})
        self.guard.recoveries, self.lr_scale = int(guard["recoveries"]), float(guard["lr_scale"])
        self.set_lr_scale(self.lr_scale)
        self.load_extra_state(extra)

    def set_budget(self, seconds: float | None) -> None:
        """Train for ``seconds`` of training time (the schedules follow that clock); None: steps only."""
        self.clock = TrainingClock(self.clock.max_steps, seconds)

    def _after_step(self, scalars: dict, logger: ScalarLogger | None, bar) -> None:
        cfg = self.loop_cfg
        bar.update(1)
        if self.dist.is_main:
            for hook in self.step_hooks:
                hook(self, scalars)
            if self.step % cfg.log_every == 0 or self.step == 1:
                logger.log(self.step, {**scalars, "seconds": self.elapsed})
                bar.set_postfix(self.postfix(scalars))
            if cfg.val_every > 0 and self.step % cfg.val_every == 0:
                self.validate()
        if (
            cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0
        ) or self.elapsed - self._last_save >= 60.0 * cfg.ckpt_every_minutes:
            self.save()
