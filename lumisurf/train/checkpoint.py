"""Checkpoints: model, optimiser, step and elapsed training seconds (atomic write)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from lumisurf.errors import LumisurfError


def save_checkpoint(path: Path, model, optimizer, step: int, elapsed: float) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {"model": model.state_dict(), "optimizer": None if optimizer is None else optimizer.state_dict(),
             "step": step, "elapsed": elapsed}
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, optimizer=None, device="cpu") -> tuple[int, float]:
    """Load weights (and optimiser state) in place; returns (step, elapsed seconds)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise LumisurfError(f"no checkpoint at {path}") from None
    except Exception as exc:  # corrupt file
        raise LumisurfError(f"cannot read checkpoint {path}: {exc}") from None
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), float(state["elapsed"])
