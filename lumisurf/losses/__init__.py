"""Losses: photometric and geometric terms (pure functions returning scalar tensors)."""

from __future__ import annotations

from lumisurf.losses.geometry import curvature_loss, eikonal_loss, mask_loss
from lumisurf.losses.photometric import PHOTOMETRIC, psnr_from_mse, rgb_loss

__all__ = ["PHOTOMETRIC", "curvature_loss", "eikonal_loss", "mask_loss", "psnr_from_mse", "rgb_loss"]
