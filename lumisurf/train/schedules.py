"""Small schedule objects with ``update(step)``: annealing ratios and learning-rate factors."""
from __future__ import annotations

import math


class CosAnnealSchedule:
    """NeuS cos-anneal ratio: linear 0 -> 1 over ``anneal_end`` steps (1 at once if anneal_end <= 0)."""

    def __init__(self, anneal_end: int):
        self.anneal_end = anneal_end
        self.value = 1.0 if anneal_end <= 0 else 0.0

    def update(self, step: int) -> float:
        self.value = 1.0 if self.anneal_end <= 0 else min(1.0, step / self.anneal_end)
        return self.value


class WarmupCosineLR:
    """Learning-rate factor: linear warm-up, then cosine decay to ``min_factor`` at ``total`` steps (NeuS)."""

    def __init__(self, optimizer, warmup: int, total: int, min_factor: float):
        self.optimizer, self.warmup, self.total, self.min_factor = optimizer, warmup, max(total, 1), min_factor
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.factor = 1.0

    def update(self, step: int) -> float:
        if step < self.warmup:
            f = step / max(self.warmup, 1)
        else:
            progress = min(1.0, (step - self.warmup) / max(self.total - self.warmup, 1))
            f = (math.cos(math.pi * progress) + 1.0) * 0.5 * (1 - self.min_factor) + self.min_factor
        self.factor = f
        for g, base in zip(self.optimizer.param_groups, self.base):
            g["lr"] = base * f
        return f


class LevelSchedule:
    """Coarse-to-fine hash levels: ``start`` active at step 0, one more every ``every`` steps."""

    def __init__(self, start: int, every: int, n_levels: int):
        self.start, self.every, self.n_levels = start, every, n_levels
        self.value = n_levels if every <= 0 else min(start, n_levels)

    def update(self, step: int) -> int:
        self.value = self.n_levels if self.every <= 0 else min(self.n_levels, self.start + step // self.every)
        return self.value


class FDStepSchedule:
    """Finite-difference step (world units).

    ``exp``: geometric from ``start`` to ``end`` over ``total`` steps (Instant-NSR);
    ``grid``: the cell size of the finest active hash level, never below ``end`` (Neuralangelo).
    """

    def __init__(self, mode: str, start: float, end: float, total: int, resolutions: list[int] | None,
                 bound: float = 1.0):
        self.mode, self.start, self.end, self.total = mode, start, end, max(total, 1)
        self.resolutions, self.bound = resolutions, bound
        self.value = start

    def update(self, step: int, active_levels: int | None = None) -> float:
        if self.mode == "grid" and self.resolutions:
            level = max(1, len(self.resolutions) if active_levels is None else active_levels) - 1
            self.value = max(self.end, 2.0 * self.bound / self.resolutions[level])
        else:
            frac = min(1.0, step / self.total)
            self.value = self.start * (self.end / self.start) ** frac
        return self.value
