"""The training loop both trainers share: guarded steps until the clock is done, logging, periodic
checkpoints and validation strips, and a checkpoint whatever ends the run (Ctrl-C, a kill, an error).

A trainer using :class:`TrainingLoop` provides ``cfg``, ``run``, ``progress``, ``clock``, ``step``, ``elapsed``
and the methods ``guarded_step()``, ``save()``, ``_resume()``, ``validate()`` and ``_postfix(scalars)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm import tqdm

from lumisurf.train.logging import ScalarLogger


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    final_psnr: float


class TrainingLoop:
    loop_desc = "train"
    tensorboard = True

    def fit(self, resume: bool = False) -> TrainResult:
        if resume:
            self._resume()
        logger = ScalarLogger(self.run.scalars_path, self.run.root / "tb" if self.tensorboard else None,
                              append=resume)
        bar = tqdm(total=self.clock.estimated_total_steps(self.step, self.elapsed), initial=self.step,
                   disable=not self.progress, dynamic_ncols=True, desc=self.loop_desc, unit="it")
        start = time.perf_counter() - self.elapsed
        self._last_save = self.elapsed
        scalars: dict[str, float] = {"psnr": float("nan")}
        try:
            while not self.clock.done(self.step, self.elapsed):
                scalars = self.guarded_step()
                self.elapsed = time.perf_counter() - start
                if self.step % 100 == 0:  # progress bar only: keep the ETA honest
                    bar.total = self.clock.estimated_total_steps(self.step, self.elapsed)
                self._after_step(scalars, logger, bar)
        except KeyboardInterrupt:
            self.save()
            tqdm.write(f"interrupted at step {self.step}: checkpoint saved to {self.run.ckpt_path}; "
                       f"continue with --resume")
            raise
        except BaseException:
            self.save()  # a run never ends without a checkpoint (the healthy state if the weights are NaN)
            raise
        finally:
            bar.close()
            logger.close()
        self.save()
        return TrainResult(self.step, self.elapsed, scalars.get("psnr", float("nan")))

    def _after_step(self, scalars: dict, logger: ScalarLogger, bar) -> None:
        cfg = self.cfg.train
        bar.update(1)
        if self.step % cfg.log_every == 0 or self.step == 1:
            logger.log(self.step, {**scalars, "seconds": self.elapsed})
            bar.set_postfix(self._postfix(scalars))
        if cfg.val_every > 0 and self.step % cfg.val_every == 0:
            self.validate()
        if (cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0) or \
                self.elapsed - self._last_save >= 60.0 * cfg.ckpt_every_minutes:
            self.save()
