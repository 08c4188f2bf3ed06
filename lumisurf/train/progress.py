"""The one training progress in [0, 1] that every schedule reads.

Under a wall-clock budget (``--max-minutes``) progress = elapsed training seconds / budget, so the schedules
end when the budget ends whatever the machine's speed; under a step budget it is step / max_steps. When
both bind, the one further along wins (the run stops at whichever comes first). ``elapsed`` and ``step`` are
saved in checkpoints, so a resumed run continues at the same progress.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingClock:
    max_steps: int
    budget_seconds: float | None = None  # None: step budget only

    def progress(self, step: int, elapsed: float) -> float:
        p = step / max(self.max_steps, 1)
        if self.budget_seconds is not None:
            p = max(p, elapsed / max(self.budget_seconds, 1e-9))
        return min(1.0, max(0.0, p))

    def done(self, step: int, elapsed: float) -> bool:
        return step >= self.max_steps or (self.budget_seconds is not None and elapsed >= self.budget_seconds)

    def estimated_total_steps(self, step: int, elapsed: float) -> int:
        """Steps the run will make at the rate so far (for the progress bar only; schedules never use it)."""
        if self.budget_seconds is None or step == 0:
            return self.max_steps
        return min(self.max_steps, max(step, int(step * self.budget_seconds / max(elapsed, 1e-9))))

    @classmethod
    def from_config(cls, train_cfg) -> TrainingClock:
        budget = None if train_cfg.max_minutes is None else 60.0 * train_cfg.max_minutes
        return cls(train_cfg.max_steps, budget)
