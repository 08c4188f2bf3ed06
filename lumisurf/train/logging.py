"""Scalar logging to CSV (always) and TensorBoard (when installed)."""

from __future__ import annotations

import csv
from pathlib import Path


class ScalarLogger:
    def __init__(self, path: Path, tensorboard_dir: Path | None = None, append: bool = False):
        self.path = Path(path)
        self._fields: list[str] | None = None
        if append and self.path.exists():
            with open(self.path) as f:
                header = f.readline().strip()
            self._fields = header.split(",") if header else None
        elif self.path.exists():
            self.path.unlink()
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(tensorboard_dir))
            except Exception:  # tensorboard not installed: CSV only
                self._tb = None

    def log(self, step: int, scalars: dict[str, float]) -> None:
        row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
        if self._fields is None:
            self._fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, self._fields).writeheader()
        elif any(k not in self._fields for k in row):  # a term switched on later (e.g. a phase): widen
            self._widen([k for k in row if k not in self._fields])
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self._fields, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), step)

    def _widen(self, new: list[str]) -> None:
        """Rewrite the CSV with extra columns (earlier rows get empty cells there)."""
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        self._fields = self._fields + new
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self._fields)
            w.writeheader()
            w.writerows(rows)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
