"""Divergence guard: notice a collapsing Stage I run early, roll it back to a healthy state, go on slower.

Signals (any one is a divergence):
- a non-finite loss, or non-finite parameters (checked every ``check_every`` steps);
- an exception inside a training step (e.g. a kernel meeting an impossible state);
- the occupancy grid emptying on refresh (no cell near the zero level set: the surface vanished);
- the batch coverage (mask IoU of opacity > 0.5 with the masks, or the fraction of rays with opacity > 0.5
  without masks; an EMA) falling below ``coverage_drop`` x its peak;
- inv_s (the NeuS sharpness, rising in a healthy run) below ``inv_s_drop`` x its running maximum on
  ``inv_s_checks`` checks in a row.

Recovery restores the older of the two last in-memory snapshots (taken every ``snapshot_every`` steps while
healthy: model, optimiser and the caller's extra state) and multiplies the learning rate by ``lr_factor``.
After ``max_recoveries`` recoveries one more divergence raises :class:`TrainingDiverged` with the healthy
state restored, so the caller can save it as the run's checkpoint.
"""

from __future__ import annotations

import copy
import math
from collections import deque

import torch

from lumisurf.errors import LumisurfError
from lumisurf.train_config import GuardConfig


class TrainingDiverged(LumisurfError):
    """Raised after too many divergences; the model holds the last healthy state."""


def batch_coverage(opacity: torch.Tensor, mask: torch.Tensor | None) -> float:
    """IoU of (opacity > 0.5) with (mask > 0.5) [n_rays, 1]; without masks the fraction of rays with
    opacity > 0.5. NaN when the union is empty (nothing to judge on this batch)."""
    pred = opacity.detach().reshape(-1) > 0.5
    if mask is None:
        return float(pred.float().mean()) if pred.numel() else float("nan")
    gt = mask.detach().reshape(-1) > 0.5
    union = (pred | gt).sum()
    return float((pred & gt).sum() / union) if union > 0 else float("nan")


def parameters_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class DivergenceGuard:
    def __init__(self, cfg: GuardConfig):
        self.cfg = cfg
        self.snapshots: deque = deque(maxlen=2)
        self.recoveries = 0
        self.events: list[str] = []
        self._reset_detectors()

    def _reset_detectors(self) -> None:
        self.inv_s_max, self.low_inv_s = 0.0, 0
        self.coverage_ema, self.coverage_peak = None, 0.0

    # ------------------------------------------------------------------ detection
    def observe(self, step: int, scalars: dict) -> str | None:
        """Feed one step's scalars (loss, inv_s, coverage); returns a reason when the run is diverging."""
        if not self.cfg.enabled:
            return None
        loss = scalars.get("loss", 0.0)
        if not math.isfinite(loss):
            return f"loss is {loss}"
        reason = self._coverage(scalars.get("coverage", float("nan")))
        if reason is None and step % self.cfg.check_every == 0 and "inv_s" in scalars:
            reason = self._inv_s(scalars["inv_s"])
        return reason

    def _coverage(self, value: float) -> str | None:
        if not math.isfinite(value):
            return None
        self.coverage_ema = value if self.coverage_ema is None else 0.9 * self.coverage_ema + 0.1 * value
        self.coverage_peak = max(self.coverage_peak, self.coverage_ema)
        if self.coverage_peak > 0.3 and self.coverage_ema < self.cfg.coverage_drop * self.coverage_peak:
            return f"the surface is vanishing: batch coverage {self.coverage_ema:.3f} (peak {self.coverage_peak:.3f})"
        return None

    def _inv_s(self, inv_s: float) -> str | None:
        if not math.isfinite(inv_s):
            return f"inv_s is {inv_s}"
        self.inv_s_max = max(self.inv_s_max, inv_s)
        self.low_inv_s = self.low_inv_s + 1 if inv_s < self.cfg.inv_s_drop * self.inv_s_max else 0
        if self.low_inv_s >= self.cfg.inv_s_checks:
            return f"inv_s fell to {inv_s:.1f} from {self.inv_s_max:.1f} (the surface is blurring away)"
        return None

    def check_occupancy(self, occupied: float) -> str | None:
        """The occupancy grid's last refresh left (almost) no cell: the surface has vanished."""
        if self.cfg.enabled and occupied < self.cfg.min_occupied:
            return f"the occupancy grid emptied (occupied fraction {occupied:.2e})"
        return None

    def check_parameters(self, model: torch.nn.Module) -> str | None:
        if self.cfg.enabled and not parameters_finite(model):
            return "parameters are not finite"
        return None

    @property
    def healthy(self) -> bool:
        return self.low_inv_s == 0

    # ------------------------------------------------------------------ snapshots and recovery
    def snapshot(self, step: int, model: torch.nn.Module, optimizer, extra: dict | None = None) -> None:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.snapshots.append((step, state, copy.deepcopy(optimizer.state_dict()), copy.deepcopy(extra)))

    def restore(self, model: torch.nn.Module, optimizer) -> tuple[int, dict | None]:
        """Load the oldest kept snapshot (keeping only it); returns its step and extra state."""
        step, state, opt_state, extra = self.snapshots[0]
        model.load_state_dict(state)
        optimizer.load_state_dict(copy.deepcopy(opt_state))
        self.snapshots = deque([self.snapshots[0]], maxlen=2)
        self._reset_detectors()
        return step, copy.deepcopy(extra)

    def recover(self, step: int, reason: str, model: torch.nn.Module, optimizer) -> tuple[int, dict | None]:
        """Roll back after a divergence at ``step``; raises TrainingDiverged (healthy state restored) when
        the recoveries are used up. Returns the snapshot's step and extra state."""
        if not self.snapshots:
            raise TrainingDiverged(f"diverged at step {step} before any healthy state was kept: {reason}")
        good_step, extra = self.restore(model, optimizer)
        self.events.append(f"step {step}: {reason}")
        if self.recoveries >= self.cfg.max_recoveries:
            raise TrainingDiverged(
                f"training diverged {self.recoveries + 1} times (last at step {step}: {reason}); stopped with "
                f"the state of step {good_step} saved. Try a lower optim.lr or a longer budget."
            )
        self.recoveries += 1
        return good_step, extra
