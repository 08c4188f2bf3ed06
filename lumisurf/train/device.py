"""The torch device of a run: ``train.device`` / ``--device`` (``auto``: CUDA when present, else the CPU)."""

from __future__ import annotations

import torch

from lumisurf.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    return torch.device(name)
