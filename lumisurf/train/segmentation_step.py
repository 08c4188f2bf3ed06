"""Stage I segmentation terms of one training step (phases C/D): the losses of ``losses/segmentation.py``
fed from the model's outputs. Orchestration only; the maths lives in the loss functions.

* entropy / sparsity: per-ray assignment (normalised by opacity) should be decisive;
* energy: the mixture's reflectance must stay <= 1 at every sample;
* boundary: A(x) and A(x + eps) agree at surface points (x from the rendered depth);
* consistency: a surface point seen from another training camera gets the same assignment there (a ray
  from that camera's centre through the point is rendered; occluded views are masked by depth);
* em: cross-entropy of the assignment to the E-step posterior of the heads' per-ray residuals;
* smoothness / material_range: head parameters at x and x + eps agree; per-ray albedo stays in the
  physically plausible [0.02, 0.95] and roughness above 0.02 (the heads' sigmoids already bound [0, 1]);
* warm_start: cross-entropy of the rendered assignment to 2D soft maps (k-means or user masks) lifted to
  3D through rendering (``warm_start_maps``);
* metal_prior: self-training from the specular head's own estimate: surface points where it finds metal
  (metallic above a threshold) go to the view-dependent heads, the others to Lambert / subsurface
  (``metal_prior_loss``). Metal against dielectric is the first split of PBR materials, and Stage I
  recovers metallic well where reflections are visible; glossy dielectrics are not told apart by it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.data.images import as_float
from lumisurf.errors import ConfigError
from lumisurf.fields.assignment import kmeans_soft_maps, load_mask_folder
from lumisurf.losses.reduce import safe_mean
from lumisurf.losses.segmentation import (
    boundary_smoothness_loss,
    consistency_loss,
    crease_weight,
    em_assignment_loss,
    em_posterior,
    energy_conservation_loss,
    entropy_loss,
    range_loss,
    smoothness_loss,
    sparsity_loss,
)
from lumisurf.shading.heads import HEADS

CONSISTENCY_RAYS = 128
DEPTH_TOLERANCE = 0.02  # normalised units: the other view's depth must reach the point


def _ray_probs(out: dict, sel: Tensor) -> Tensor:
    p = out["material_probs"][sel]
    return p / p.sum(-1, keepdim=True).clamp_min(1e-6)


def segmentation_losses(
    model,
    out: dict,
    o: Tensor,
    d: Tensor,
    target: Tensor,
    cameras,
    seg_cfg,
    active: Callable[[str], bool],
    render_fn,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Weighted-by-nothing loss values keyed by name (the caller applies the weights)."""
    surf = (out["opacity"][:, 0] > 0.5).nonzero()[:, 0]
    losses: dict[str, Tensor] = {}
    if surf.numel() == 0:
        return losses
    probs = _ray_probs(out, surf)
    if active("entropy") and seg_cfg.entropy_weight > 0:
        losses["entropy"] = entropy_loss(probs)
    if active("sparsity") and seg_cfg.sparsity_weight > 0:
        losses["sparsity"] = sparsity_loss(probs)
    if active("energy") and seg_cfg.energy_weight > 0 and "reflectance" in out:
        losses["energy"] = energy_conservation_loss(out["reflectance"])
    x = (o[surf] + d[surf] * out["depth"][surf]).detach()  # [M, 3] surface points
    jitter = torch.randn(x.shape, generator=generator, device="cpu").to(x) * seg_cfg.boundary_eps
    if active("boundary") and seg_cfg.boundary_weight > 0:
        a = model.color.assignment
        with torch.no_grad():  # material edges may sit on creases: penalise less across them
            n_a = model.sdf.sdf_and_gradient(x, create_graph=False)[2]
            n_b = model.sdf.sdf_and_gradient(x + jitter, create_graph=False)[2]
            w = crease_weight(F.normalize(n_a, dim=-1), F.normalize(n_b, dim=-1), seg_cfg.boundary_sharpness)
        losses["boundary"] = boundary_smoothness_loss(a.probs(x), a.probs(x + jitter), w)
    if active("smoothness") and seg_cfg.smoothness_weight > 0:
        losses["smoothness"] = _head_smoothness(model, x, jitter)
    if active("material_range") and seg_cfg.material_range_weight > 0:
        losses["material_range"] = range_loss(out["albedo"][surf], 0.02, 0.95) + range_loss(
            out["roughness"][surf], 0.02, 1.0
        )
    if active("consistency") and seg_cfg.consistency_weight > 0:
        losses["consistency"] = _consistency(x, probs, cameras, render_fn, generator)
    if (
        active("metal_prior")
        and seg_cfg.metal_prior_weight > 0
        and any(HEADS[n].gives_materials for n in model.color.head_names)
    ):
        losses["metal_prior"] = _metal_prior(model, x, probs, seg_cfg)
    if active("em") and seg_cfg.em_weight > 0:
        residual = (out["head_rgb"][surf] - target[surf, None]).abs().mean(-1)  # [M, K]
        post = em_posterior(residual.detach(), seg_cfg.em_temperature)
        losses["em"] = em_assignment_loss(probs, post)
    return losses


def _metal_prior(model, x: Tensor, probs: Tensor, seg_cfg) -> Tensor:
    """The metal prior at surface points x [M, 3] with per-ray assignments probs [M, K]."""
    names = model.color.head_names
    with torch.no_grad():
        head = next(h for n, h in zip(names, model.color.heads) if HEADS[n].gives_materials)
        params = head.params_at(x, model.sdf(x)[1])
        target = torch.sigmoid((params[:, 3] - seg_cfg.metal_prior_threshold) / seg_cfg.metal_prior_width)
    return metal_prior_loss(probs, names, target)


def metal_prior_loss(probs: Tensor, head_names, target: Tensor) -> Tensor:
    """BCE of the summed probability of the view-dependent heads (probs [M, K]) to ``target`` [M] in
    (0, 1). Zero (with a graph) when none or all of the heads are view-dependent."""
    vd = torch.tensor([HEADS[name].view_dependent for name in head_names], device=probs.device)
    if bool(vd.all()) or not bool(vd.any()):
        return probs.sum() * 0.0
    p = probs[:, vd].sum(-1).clamp(1e-6, 1 - 1e-6)
    return safe_mean(-(target * p.log() + (1 - target) * (1 - p).log()))


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


def _head_smoothness(model, x: Tensor, jitter: Tensor) -> Tensor:
    """Mean |params_k(x) - params_k(x + jitter)| over the heads (their pre-shading parameters in (0, 1))."""
    feats = [model.sdf(p)[1] for p in (x, x + jitter)]
    total = torch.zeros((), device=x.device)
    for head in model.color.heads:
        total = total + smoothness_loss(head.params_at(x, feats[0]), head.params_at(x + jitter, feats[1]))
    return total / len(model.color.heads)


def warm_start_maps(cfg, split) -> Tensor | None:
    """2D soft material maps [n, H, W, K] of the training views for ``model.assignment.init`` (or None)."""
    a = cfg.model.assignment
    if not a.enabled or a.init in ("none", "materials"):  # materials: lifted in 3D at phase C (material_lift)
        return None

    if a.init == "kmeans":
        return kmeans_soft_maps(as_float(split.images), split.masks, a.K)
    if a.mask_path is None:
        raise ConfigError("model.assignment.init=masks needs model.assignment.mask_path (a folder of id PNGs)")
    return load_mask_folder(a.mask_path, split.files, a.K)


def warm_start_loss(out: dict, maps: Tensor, cam: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Cross-entropy of the rendered assignment to the 2D maps at the batch's pixels (foreground only)."""
    target = maps[cam.cpu(), py.long().cpu(), px.long().cpu()].to(out["material_probs"])  # [n, K]
    fg = (target.sum(-1) > 0.5) & (out["opacity"][:, 0] > 0.5)
    if not bool(fg.any()):
        return out["material_probs"].sum() * 0.0
    p = out["material_probs"][fg]
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-6)
    return -(target[fg] * torch.log(p.clamp_min(1e-6))).sum(-1).mean()
