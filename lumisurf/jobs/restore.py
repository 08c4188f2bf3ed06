"""Rebuild a trained model from a run folder alone (config + normalisation + checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lumisurf.config import Config
from lumisurf.data.scene import Normalization
from lumisurf.models.surface import build_model
from lumisurf.train.checkpoint import load_checkpoint
from lumisurf.train.device import resolve_device
from lumisurf.train.run_dir import RunDir
from lumisurf.train.voxel_trainer import voxel_model_from_checkpoint


@dataclass
class LoadedRun:
    run: RunDir
    cfg: Config
    model: torch.nn.Module
    normalization: Normalization
    device: torch.device
    step: int
    elapsed: float


def load_run(root: Path, device: str | None = None) -> LoadedRun:
    run = RunDir(root)
    cfg = run.load_config()
    dev = resolve_device(device or cfg.train.device)
    ckpt = run.require_checkpoint()
    if cfg.model.kind == "voxels":
        model = voxel_model_from_checkpoint(cfg, ckpt, dev).to(dev)
        step, elapsed = load_checkpoint(ckpt, model, None, dev)
        model.eval()
        return LoadedRun(run, cfg, model, run.load_normalization(), dev, step, elapsed)
    has_masks = True  # only read when the config says "auto"
    if cfg.model.background.kind == "auto":  # runs saved before the config named the resolved background
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        has_masks = not any(k.startswith("background.") for k in state["model"])
    model = build_model(cfg.model, cfg.sampler, has_masks).to(dev)
    step, elapsed = load_checkpoint(ckpt, model, None, dev)
    model.eval()
    return LoadedRun(run, cfg, model, run.load_normalization(), dev, step, elapsed)
