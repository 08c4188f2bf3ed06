"""sRGB <-> linear transfer functions (IEC 61966-2-1), on values clamped to [0, 1]."""

from __future__ import annotations

import torch
from torch import Tensor


def linear_to_srgb(x: Tensor) -> Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8).pow(1 / 2.4) - 0.055)


def srgb_to_linear(x: Tensor) -> Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).pow(2.4))
