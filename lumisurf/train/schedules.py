"""Small schedule objects updated from the one training progress ``p`` in [0, 1] (``train/progress.py``):
annealing ratios, learning-rate factors, coarse-to-fine levels and finite-difference steps."""

from __future__ import annotations

import math


class CosAnnealSchedule:
    """NeuS cos-anneal ratio: linear 0 -> 1 over progress [0, ``until``] (1 at once if until <= 0)."""

    def __init__(self, until: float):
        self.until = until
        self.value = 1.0 if until <= 0 else 0.0

    def update(self, progress: float) -> float:
        self.value = 1.0 if self.until <= 0 else min(1.0, progress / self.until)
        return self.value


class WarmupCosineLR:
    """Learning-rate factor: a linear warm-up over progress [0, ``warmup``] that also lasts at least
    ``min_steps`` steps, then a cosine decay to ``min_factor`` at progress 1 (NeuS). The factor is the
    smaller of the two ramps, times ``scale`` (the divergence guard lowers it)."""

    def __init__(self, optimizer, warmup: float, min_factor: float, min_steps: int = 0):
        self.optimizer, self.warmup, self.min_factor, self.min_steps = optimizer, warmup, min_factor, min_steps
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.factor, self.scale = 1.0, 1.0

    def warm(self, progress: float, step: int) -> float:
        by_progress = 1.0 if self.warmup <= 0 else progress / self.warmup
        by_steps = 1.0 if self.min_steps <= 0 else step / self.min_steps
        return min(1.0, by_progress, by_steps)

    def cosine(self, progress: float) -> float:
        q = min(1.0, max(0.0, (progress - self.warmup) / max(1.0 - self.warmup, 1e-12)))
        return (math.cos(math.pi * q) + 1.0) * 0.5 * (1 - self.min_factor) + self.min_factor

    def update(self, progress: float, step: int) -> float:
        f = min(self.warm(progress, step), self.cosine(progress)) * self.scale
        self.factor = f
        for g, base in zip(self.optimizer.param_groups, self.base):
            g["lr"] = base * f
        return f


class LevelSchedule:
    """Coarse-to-fine hash levels: ``start`` active at progress 0, evenly more until all ``n_levels`` are
    active at progress ``until`` (all from the start when until <= 0)."""

    def __init__(self, start: int, until: float, n_levels: int):
        self.start, self.until, self.n_levels = min(start, n_levels), until, n_levels
        self.value = n_levels if until <= 0 else self.start

    def update(self, progress: float) -> int:
        if self.until <= 0:
            self.value = self.n_levels
        else:
            extra = math.floor((self.n_levels - self.start) * min(1.0, progress / self.until) + 1e-9)
            self.value = min(self.n_levels, self.start + extra)
        return self.value


class FDStepSchedule:
    """Finite-difference step (world units).

    ``exp``: geometric from ``start`` at progress 0 to ``end`` at progress 1 (Instant-NSR);
    ``grid``: the cell size of the finest active hash level, never below ``end`` (Neuralangelo).
    """

    def __init__(self, mode: str, start: float, end: float, resolutions: list[int] | None, bound: float = 1.0):
        self.mode, self.start, self.end = mode, start, end
        self.resolutions, self.bound = resolutions, bound
        self.value = start

    def update(self, progress: float, active_levels: int | None = None) -> float:
        if self.mode == "grid" and self.resolutions:
            level = max(1, len(self.resolutions) if active_levels is None else active_levels) - 1
            self.value = max(self.end, 2.0 * self.bound / self.resolutions[level])
        else:
            self.value = self.start * (self.end / self.start) ** min(1.0, max(0.0, progress))
        return self.value
