"""Rebuild a trained model from a run folder alone (config + normalisation + checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lumisurf.config import Config
from lumisurf.data.scene import Normalization
from lumisurf.kinds import model_kind
from lumisurf.models.protocol import SceneModel
from lumisurf.train.checkpoint import load_checkpoint, read_checkpoint
from lumisurf.train.device import resolve_device
from lumisurf.train.run_dir import RunDir


@dataclass
class LoadedRun:
    run: RunDir
    cfg: Config
    model: SceneModel
    normalization: Normalization
    device: torch.device
    step: int
    elapsed: float


def load_run(root: Path, device: str | None = None) -> LoadedRun:
    """The run at ``root`` with its model rebuilt from the checkpoint (any registered ``model.kind``), in eval mode."""
    run = RunDir(root)
    cfg = run.load_config()
    dev = resolve_device(device or cfg.train.device)
    ckpt = run.require_checkpoint()
    model = model_kind(cfg.model.kind).from_checkpoint(cfg, read_checkpoint(ckpt, dev)["model"]).to(dev)
    step, elapsed = load_checkpoint(ckpt, model, None, dev)
    model.eval()
    return LoadedRun(run, cfg, model, run.load_normalization(), dev, step, elapsed)
