"""Checkpoints: model, optimiser, step, elapsed training seconds and the loop's own state (RNG, pixel
sampler, guard, lifted targets), written atomically (temp file, fsync, rename): a kill never leaves a
half-written ``last.pt``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lumisurf.errors import LumisurfError


def save_checkpoint(path: Path, model, optimizer, step: int, elapsed: float, extra: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    state = {
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "extra": extra or {},
    }
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_checkpoint(path: Path, device="cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise LumisurfError(f"no checkpoint at {path}") from None
    except Exception as exc:  # corrupt file
        raise LumisurfError(f"cannot read checkpoint {path}: {exc}") from None


def load_checkpoint(path: Path, model, optimizer=None, device="cpu") -> tuple[int, float]:
    """Load weights (and optimiser state) in place; returns (step, elapsed seconds)."""
    step, elapsed, _ = load_training_state(path, model, optimizer, device)
    return step, elapsed


def load_training_state(path: Path, model, optimizer=None, device="cpu") -> tuple[int, float, dict]:
    """Like :func:`load_checkpoint`, also returning the loop's extra state (empty for old checkpoints)."""
    state = read_checkpoint(path, device)
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), float(state["elapsed"]), state.get("extra") or {}
