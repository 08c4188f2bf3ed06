"""Pixel samplers: which training pixels become this step's rays."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from lumisurf.data.scene import Split


@dataclass
class PixelBatch:
    cam_idx: Tensor  # [n_rays] long
    px: Tensor  # [n_rays] continuous pixel x (col + 0.5)
    py: Tensor  # [n_rays] continuous pixel y (row + 0.5)
    rgb: Tensor  # [n_rays, 3] straight sRGB colour
    mask: Optional[Tensor]  # [n_rays, 1] coverage or None


class UniformPixelSampler:
    """Uniform over all pixels of all training views (on the training device)."""

    def __init__(self, split: Split, device: torch.device):
        n, h, w, _ = split.images.shape
        self.n, self.h, self.w = n, h, w
        self.rgb = split.images.reshape(-1, 3).to(device)
        self.mask = None if split.masks is None else split.masks.reshape(-1, 1).to(device)
        self.device = device

    def sample(self, n_rays: int, generator: torch.Generator) -> PixelBatch:
        flat = torch.randint(0, self.n * self.h * self.w, (n_rays,), generator=generator, device="cpu").to(self.device)
        cam = flat // (self.h * self.w)
        rem = flat % (self.h * self.w)
        py = (rem // self.w).float() + 0.5
        px = (rem % self.w).float() + 0.5
        mask = None if self.mask is None else self.mask[flat]
        return PixelBatch(cam, px, py, self.rgb[flat], mask)
