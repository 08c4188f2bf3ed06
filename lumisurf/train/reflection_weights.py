"""Per-ray reflection scores of a training batch, from the other training views (Ref-NeuS).

Holds the training images, masks and cameras (training data stays in ``train/``); the maths is in
:mod:`lumisurf.losses.reflection`. A view counts for a ray's surface point when the point lies in front of
it, projects inside its image (and inside its mask, where masks exist) and faces it (``n . (c - x) > 0``).
Occlusion by other parts of the object is not tested: on concave objects some counted views see another
surface, which raises the score there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.config import ReflectionLossConfig
from lumisurf.data.cameras import Cameras
from lumisurf.data.scene import Split
from lumisurf.losses.reflection import (
    anomaly_weights,
    bilinear_lookup,
    color_inverse_covariance,
    edge_gate,
    project_to_views,
    reflection_score,
)


@dataclass
class ReflectionBatch:
    weight: Tensor  # [n_rays] photometric weight in (0, 1]
    gate: Tensor | None  # [n_rays] normal-smoothness gate in [0, 1] (None when that term is off)


class ReflectionWeights:
    """``weights(out, batch, o, d)`` -> :class:`ReflectionBatch` for a batch of training rays."""

    def __init__(self, cfg: ReflectionLossConfig, split: Split, cameras: Cameras, seed: int = 0):
        if cfg.views < 1:
            raise ValueError(f"loss.reflection.views must be >= 1, got {cfg.views}")
        self.cfg, self.cameras = cfg, cameras
        device = cameras.device
        self.images = split.images.to(device)  # [V, H, W, 3] uint8 or float
        self.masks = None if split.masks is None else split.masks.to(device)[..., None]  # [V, H, W, 1]
        pick = torch.Generator().manual_seed(seed + 104729)
        self.inv_cov = color_inverse_covariance(split.images, split.masks, 20_000, pick).to(device)

    @staticmethod
    def wanted(cfg: ReflectionLossConfig) -> bool:
        """Whether any reflection-aware term is on (else the trainer builds no ReflectionWeights)."""
        return cfg.anomaly or cfg.smooth_weight > 0

    def active(self, progress: float) -> bool:
        return progress >= self.cfg.start

    @torch.no_grad()
    def weights(self, out: dict, batch, origins: Tensor, dirs: Tensor, generator: torch.Generator) -> ReflectionBatch:
        """``out``: the renderer's outputs (opacity, depth [R, 1], normal [R, 3]); ``batch``: the rays' pixels
        (:class:`lumisurf.data.pixel_sampling.base.PixelBatch`); ``generator`` draws the views (CPU)."""
        n_rays, n_views = origins.shape[0], len(self.cameras)
        opacity = out["opacity"].detach()[:, 0]  # [R]
        hit = opacity > 0.5
        points = origins + dirs * (out["depth"].detach()[:, 0] / opacity.clamp_min(1e-6))[:, None]  # [R, 3]
        normals = F.normalize(out["normal"].detach(), dim=-1)  # [R, 3]
        views = self._other_views(batch.cam_idx, n_views, generator)  # [R, K]
        px, py, in_front = project_to_views(points, self.cameras, views)
        colors, inside = bilinear_lookup(self.images, views, px, py)  # [R, K, 3]
        facing = (normals[:, None, :] * (self.cameras.centers[views] - points[:, None, :])).sum(-1) > 0
        valid = in_front & inside & facing
        if self.masks is not None:
            valid &= bilinear_lookup(self.masks, views, px, py)[0][..., 0] > 0.5
        score = reflection_score(batch.rgb.float(), colors, valid, self.inv_cov) * hit  # [R]
        anomaly = anomaly_weights(score, self.cfg.gamma)
        weight = anomaly if self.cfg.anomaly else torch.ones(n_rays).to(score)
        gate = None
        if self.cfg.smooth_weight > 0:
            gate = (1.0 - anomaly) * edge_gate(self.images, batch.cam_idx, batch.px, batch.py, self.cfg.edge_scale)
        return ReflectionBatch(weight, gate)

    def _other_views(self, own: Tensor, n_views: int, generator: torch.Generator) -> Tensor:
        """[R, K] random training views, never the ray's own (all views of a one-view scene)."""
        k = self.cfg.views
        if n_views < 2:
            return own[:, None].expand(-1, k)
        draw = torch.randint(0, n_views - 1, (own.shape[0], k), generator=generator).to(own.device)
        return draw + (draw >= own[:, None]).long()
