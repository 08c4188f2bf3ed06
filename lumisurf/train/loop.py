"""The training loop both trainers share: guarded steps until the clock is done, logging, periodic
checkpoints and validation strips, and a checkpoint whatever ends the run (Ctrl-C, a kill, an error).

A trainer using :class:`TrainingLoop` provides ``cfg``, ``run``, ``progress``, ``clock``, ``step``, ``elapsed``,
``model``, ``optimizer``, ``guard`` (:class:`lumisurf.train.guard.DivergenceGuard`) and the methods
``train_step()``, ``_update_schedules()``, ``_snapshot_extra()``, ``_recover(reason)``, ``_extra_state()``,
``_resume()``, ``validate()`` and ``_postfix(scalars)``; ``_pre_step_reason()`` and ``_observe(scalars)`` are
optional hooks. In a data-parallel run (``dist``, :mod:`lumisurf.train.distributed`) every rank runs the loop on
the same clock; only the main rank logs, validates, runs the step hooks and writes checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm import tqdm

from lumisurf.train.checkpoint import save_checkpoint
from lumisurf.train.distributed import SINGLE
from lumisurf.train.guard import parameters_finite
from lumisurf.train.logging import ScalarLogger
from lumisurf.train.progress import TrainingClock


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    final_psnr: float


class TrainingLoop:
    loop_desc = "train"
    tensorboard = True
    step_hooks: tuple = ()  # callables (loop, scalars) after every step: the live viewer
    dist = SINGLE  # this process's rank (a trainer of a data-parallel run sets its own)

    def fit(self, resume: bool = False) -> TrainResult:
        if resume:
            self._resume()
        logger = (
            ScalarLogger(self.run.scalars_path, self.run.root / "tb" if self.tensorboard else None, append=resume)
            if self.dist.is_main
            else None
        )
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
                f"interrupted at step {self.step}: checkpoint saved to {self.run.ckpt_path}; continue with --resume"
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
        return TrainResult(self.step, self.elapsed, scalars.get("psnr", float("nan")))

    def guarded_step(self) -> dict[str, float]:
        """One training step under the divergence guard (``train/guard.py``): advances ``self.step``; on a
        divergence rolls back to a healthy snapshot and lowers the lr (raises TrainingDiverged when the
        recoveries are used up, with the healthy state restored)."""
        if not self.guard.snapshots:  # the starting state is the first healthy one
            self.guard.snapshot(self.step, self.model, self.optimizer, self._snapshot_extra())
        self._update_schedules()
        scalars: dict[str, float] = {"loss": float("nan"), "psnr": float("nan")}
        reason = self._pre_step_reason()
        if reason is None:
            try:
                scalars = self.train_step()
                reason = self.guard.observe(self.step + 1, scalars)
            except (RuntimeError, ValueError, FloatingPointError) as exc:
                if not self.cfg.train.guard.enabled:
                    raise
                reason = f"{type(exc).__name__} in the training step: {str(exc).splitlines()[0][:200]}"
        self.step += 1
        if reason is None and self.step % self.cfg.train.guard.check_every == 0:
            reason = self.guard.check_parameters(self.model)
        self._observe(scalars)
        if reason is not None:
            self._recover(reason)
        elif self.step % self.cfg.train.guard.snapshot_every == 0 and self.guard.healthy:
            self.guard.snapshot(self.step, self.model, self.optimizer, self._snapshot_extra())
        return scalars

    def save(self) -> None:
        """Write the run's checkpoint (main rank only); if the live weights are not finite, the guard's healthy
        snapshot."""
        if not self.dist.is_main:
            return
        if not parameters_finite(self.model) and self.guard.snapshots:
            self.guard.restore(self.model, self.optimizer)
        save_checkpoint(self.run.ckpt_path, self.model, self.optimizer, self.step, self.elapsed, self._extra_state())
        self._last_save = self.elapsed

    def _pre_step_reason(self) -> str | None:
        """A divergence seen before the step (None: healthy)."""
        return None

    def _observe(self, scalars: dict) -> None:
        """Called with every step's scalars (after the step counter advanced)."""

    def set_budget(self, seconds: float | None) -> None:
        """Train for ``seconds`` of training time (the schedules follow that clock); None: steps only."""
        self.clock = TrainingClock(self.cfg.train.max_steps, seconds)

    def _after_step(self, scalars: dict, logger: ScalarLogger, bar) -> None:
        cfg = self.cfg.train
        bar.update(1)
        if self.dist.is_main:
            for hook in self.step_hooks:
                hook(self, scalars)
            if self.step % cfg.log_every == 0 or self.step == 1:
                logger.log(self.step, {**scalars, "seconds": self.elapsed})
                bar.set_postfix(self._postfix(scalars))
            if cfg.val_every > 0 and self.step % cfg.val_every == 0:
                self.validate()
        if (
            cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0
        ) or self.elapsed - self._last_save >= 60.0 * cfg.ckpt_every_minutes:
            self.save()
