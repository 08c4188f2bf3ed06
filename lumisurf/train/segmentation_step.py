"""Stage I segmentation terms of one training step (phases C/D): the losses of ``losses/segmentation.py``
fed from the model's outputs. Orchestration only; the maths lives in the loss functions.

* entropy: per-ray assignment (normalised by opacity) should be decisive;
* energy: the mixture's reflectance must stay <= 1 at every sample;
* boundary: A(x) and A(x + eps) agree at surface points (x from the rendered depth);
* consistency: a surface point seen from another training camera gets the same assignment there (a ray
  from that camera's centre through the point is rendered; occluded views are masked by depth);
* em: cross-entropy of the assignment to the E-step posterior of the heads' per-ray residuals.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.losses.segmentation import (boundary_smoothness_loss, consistency_loss, em_assignment_loss,
                                          em_posterior, energy_conservation_loss, entropy_loss)

CONSISTENCY_RAYS = 128
DEPTH_TOLERANCE = 0.02  # normalised units: the other view's depth must reach the point


def _ray_probs(out: dict, sel: Tensor) -> Tensor:
    p = out["material_probs"][sel]
    return p / p.sum(-1, keepdim=True).clamp_min(1e-6)


def segmentation_losses(model, out: dict, o: Tensor, d: Tensor, target: Tensor, cameras, seg_cfg,
                        active: Callable[[str], bool], render_fn, generator: torch.Generator) -> dict[str, Tensor]:
    """Weighted-by-nothing loss values keyed by name (the caller applies the weights)."""
    surf = (out["opacity"][:, 0] > 0.5).nonzero()[:, 0]
    losses: dict[str, Tensor] = {}
    if surf.numel() == 0:
        return losses
    probs = _ray_probs(out, surf)
    if active("entropy") and seg_cfg.entropy_weight > 0:
        losses["entropy"] = entropy_loss(probs)
    if active("energy") and seg_cfg.energy_weight > 0 and "reflectance" in out:
        losses["energy"] = energy_conservation_loss(out["reflectance"])
    x = (o[surf] + d[surf] * out["depth"][surf]).detach()  # [M, 3] surface points
    if active("boundary") and seg_cfg.boundary_weight > 0:
        jitter = torch.randn(x.shape, generator=generator, device="cpu").to(x) * seg_cfg.boundary_eps
        a = model.color.assignment
        losses["boundary"] = boundary_smoothness_loss(a.probs(x), a.probs(x + jitter))
    if active("consistency") and seg_cfg.consistency_weight > 0:
        losses["consistency"] = _consistency(x, probs, cameras, render_fn, generator)
    if active("em") and seg_cfg.em_weight > 0:
        residual = (out["head_rgb"][surf] - target[surf, None]).abs().mean(-1)  # [M, K]
        post = em_posterior(residual.detach(), seg_cfg.em_temperature)
        losses["em"] = em_assignment_loss(probs, post)
    return losses


def _consistency(x: Tensor, probs: Tensor, cameras, render_fn, generator: torch.Generator) -> Tensor:
    m = min(CONSISTENCY_RAYS, x.shape[0])
    pick = torch.randperm(x.shape[0], generator=generator)[:m].to(x.device)
    x, probs = x[pick], probs[pick]
    cam = torch.randint(0, len(cameras), (m,), generator=generator).to(x.device)
    o2 = cameras.centers[cam].to(x)
    d2 = F.normalize(x - o2, dim=-1)
    out2 = render_fn(o2, d2)
    dist = (x - o2).norm(dim=-1)
    valid2 = ((out2["depth"][:, 0] - dist).abs() < DEPTH_TOLERANCE) & (out2["opacity"][:, 0] > 0.5)
    p2 = out2["material_probs"] / out2["material_probs"].sum(-1, keepdim=True).clamp_min(1e-6)
    per_view = torch.stack([probs, p2], 1)  # [m, 2, K]
    valid = torch.stack([torch.ones_like(valid2), valid2], 1)
    return consistency_loss(per_view, valid)
