"""Pixel samplers: which training pixels become this step's rays (base class and the uniform one).

The adaptive samplers (soft mining, context prior, quadtree) and the ``PIXEL_SAMPLERS`` registry
live in :mod:`lumisurf.data.pixel_sampling.adaptive`. All random draws use the caller's (CPU) generator and
are moved to the sampler's device afterwards, so runs are reproducible on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lumisurf.data.images import as_float
from lumisurf.data.pixel_sampling.error_maps import ErrorMaps
from lumisurf.data.scene import Split


@dataclass
class PixelBatch:
    cam_idx: Tensor  # [n_rays] long
    px: Tensor  # [n_rays] continuous pixel x (col + 0.5)
    py: Tensor  # [n_rays] continuous pixel y (row + 0.5)
    rgb: Tensor  # [n_rays, 3] straight sRGB color
    mask: Tensor | None  # [n_rays, 1] coverage or None
    weight: Tensor | None = None  # [n_rays, 1] per-ray loss correction (mean 1) or None

    def rows(self, sl: slice) -> PixelBatch:
        """The rays ``sl`` of the batch (a data-parallel rank's share)."""
        pick = lambda t: None if t is None else t[sl]  # noqa: E731
        return PixelBatch(self.cam_idx[sl], self.px[sl], self.py[sl], self.rgb[sl], pick(self.mask), pick(self.weight))


class PixelSampler:
    """Common state: the training pixels flattened on the device, and the batch gathering."""

    def __init__(self, split: Split, device: torch.device):
        n, h, w, _ = split.images.shape
        self.n, self.h, self.w = n, h, w
        self.rgb = split.images.reshape(-1, 3).to(device)  # [n*h*w, 3] uint8 or float
        self.mask = None if split.masks is None else split.masks.reshape(-1, 1).to(device)
        self.device = torch.device(device)

    @property
    def n_pixels(self) -> int:
        return self.n * self.h * self.w

    def batch(self, cam: Tensor, row: Tensor, col: Tensor, weight: Tensor | None = None) -> PixelBatch:
        """Batch at integer pixels (cam, row, col) [n_rays] long; rays through the pixel centres."""
        flat = (cam * self.h + row) * self.w + col
        mask = None if self.mask is None else self.mask[flat]
        w = None if weight is None else weight.reshape(-1, 1).float()
        return PixelBatch(cam, col.float() + 0.5, row.float() + 0.5, as_float(self.rgb[flat]), mask, w)

    def batch_flat(self, flat: Tensor, weight: Tensor | None = None) -> PixelBatch:
        """Batch at flat pixel indices ``(cam * h + row) * w + col`` [n_rays] long."""
        cam = flat // (self.h * self.w)
        rem = flat % (self.h * self.w)
        return self.batch(cam, rem // self.w, rem % self.w, weight)

    def sample(self, n_rays: int, generator: torch.Generator) -> PixelBatch:
        raise NotImplementedError

    def update(self, batch: PixelBatch, per_ray_error: Tensor, step: int) -> None:
        """Feed back this step's detached per-ray L1 error [n_rays]; adaptive samplers override."""

    # the training pixels and fixed facts are rebuilt from the data; everything else is adaptive state
    _REBUILT = frozenset({"rgb", "mask", "device", "n", "h", "w", "prior"})

    def state_dict(self) -> dict:
        """Adaptive state for checkpoints: tensors, numbers and error maps (not the pixels)."""
        return _plain_attrs(self, skip=self._REBUILT)

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            current = getattr(self, k, None)
            if isinstance(v, dict) and current is not None and hasattr(current, "__dict__"):
                for name, value in v.items():
                    setattr(current, name, _to(value, self.device))
            else:
                setattr(self, k, _to(v, self.device))


_SKIP = object()


def _plain_state(v):
    """A checkpointable copy of one sampler attribute (tensors, numbers, None, ErrorMaps-like objects)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Tensor):
        return v.detach().cpu().clone()
    if isinstance(v, ErrorMaps):
        return _plain_attrs(v)
    return _SKIP


def _plain_attrs(obj, skip=frozenset()) -> dict:
    out = {}
    for k, v in vars(obj).items():
        plain = _SKIP if k in skip else _plain_state(v)
        if plain is not _SKIP:
            out[k] = plain
    return out


def _to(v, device):
    return v.to(device) if isinstance(v, Tensor) else v


class UniformPixelSampler(PixelSampler):
    """Uniform over all pixels of all training views (on the training device)."""

    def __init__(self, split: Split, device: torch.device, cfg=None):
        super().__init__(split, device)

    def sample(self, n_rays: int, generator: torch.Generator) -> PixelBatch:
        flat = torch.randint(0, self.n_pixels, (n_rays,), generator=generator, device="cpu").to(self.device)
        return self.batch_flat(flat)
