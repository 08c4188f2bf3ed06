"""Material-segmentation losses (pure functions of tensors returning scalars) and the helpers that
build the cross-view probability tensor for the reprojection-consistency term.

Shapes: probs [N, K] sum to 1 over K; probs_per_view [M, V, K] = the probabilities each of V views
assigns to M surface points (rendered 2D probability maps sampled at the projections); valid [M, V].
Every term is a finite 0 (keeping the graph) over an empty selection (M = 0 or N = 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.losses.reduce import safe_mean

_EPS = 1e-8


# ----------------------------------------------------------------------------- cross-view tensor


def project_to_views(points: Tensor, cameras, view_ids) -> tuple[Tensor, Tensor, Tensor]:
    """Project world points [M, 3] into cameras ``view_ids`` [V] (pinhole, distortion ignored).

    Returns pixel coordinates uv [M, V, 2] (col, row; pixel centres at +0.5), camera depth z [M, V]
    and ``inside`` [M, V] (z > 0 and uv inside the image).
    """
    ids = torch.as_tensor(view_ids, dtype=torch.long, device=cameras.device)
    w2c = torch.linalg.inv(cameras.c2w[ids].to(points.dtype))  # [V, 4, 4]
    pc = torch.einsum("vij,mj->mvi", w2c[:, :3, :3], points) + w2c[:, :3, 3]  # [M, V, 3]
    z = pc[..., 2]
    zs = z.clamp_min(1e-8)
    u = cameras.fx[ids].to(points) * pc[..., 0] / zs + cameras.cx[ids].to(points)
    v = cameras.fy[ids].to(points) * pc[..., 1] / zs + cameras.cy[ids].to(points)
    inside = (z > 0) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)
    return torch.stack([u, v], -1), z, inside


def sample_view_maps(maps: Tensor, uv: Tensor) -> Tensor:
    """Bilinear samples of per-view maps [V, H, W, C] at pixel positions uv [M, V, 2] -> [M, V, C].

    Pixel (col, row) covers [col, col + 1), matching ``grid_sample(align_corners=False)``; borders clamp.
    """
    V, H, W, C = maps.shape
    grid = torch.stack([2.0 * uv[..., 0] / W - 1.0, 2.0 * uv[..., 1] / H - 1.0], -1)  # [M, V, 2]
    grid = grid.permute(1, 0, 2)[:, :, None, :].to(maps)  # [V, M, 1, 2]
    out = F.grid_sample(
        maps.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # [V, C, M, 1]
    return out[..., 0].permute(2, 0, 1)


def gather_probs_per_view(
    prob_maps: Tensor, cameras, view_ids, points: Tensor, depth_maps: Tensor | None = None, depth_tol: float = 0.02
) -> tuple[Tensor, Tensor]:
    """Build probs_per_view [M, V, K] and valid [M, V] for surface points [M, 3].

    prob_maps [V, H, W, K]: rendered assignment probabilities of views ``view_ids``; depth_maps
    [V, H, W] (camera z, optional): a projection counts only where |z - depth| < depth_tol (visible).
    """
    uv, z, valid = project_to_views(points, cameras, view_ids)
    probs = sample_view_maps(prob_maps, uv)
    if depth_maps is not None:
        d = sample_view_maps(depth_maps[..., None], uv)[..., 0]
        valid = valid & ((z - d).abs() < depth_tol)
    return probs, valid


# ----------------------------------------------------------------------------- segmentation terms


def consistency_loss(probs_per_view: Tensor, valid: Tensor) -> Tensor:
    """Mean over points seen in >= 2 views of the per-point variance across views, summed over K.

    Population variance over the valid views: 1/n sum_v |p_v - mean|^2 (the trace of the covariance).
    """
    w = valid.to(probs_per_view.dtype)[..., None]  # [M, V, 1]
    n = w.sum(1)  # [M, 1]
    mean = (probs_per_view * w).sum(1) / n.clamp_min(1)  # [M, K]
    var = ((probs_per_view - mean[:, None]) ** 2 * w).sum((1, 2)) / n[:, 0].clamp_min(1)  # [M]
    keep = (n[:, 0] >= 2).to(var.dtype)
    return (var * keep).sum() / keep.sum().clamp_min(1)


def entropy_loss(probs: Tensor) -> Tensor:
    """Mean per-point entropy -sum_k p log p (nats); uniform over K gives log K."""
    return safe_mean(-(probs * probs.clamp_min(_EPS).log()).sum(-1))


def sparsity_loss(probs: Tensor, kind: str = "max") -> Tensor:
    """Push towards one material per point. ``max``: mean (1 - max_k p); ``ratio``: mean L1/L2 - 1."""
    if kind == "max":
        return safe_mean(1.0 - probs.amax(-1))
    if kind == "ratio":
        return safe_mean(probs.abs().sum(-1) / probs.norm(dim=-1).clamp_min(_EPS) - 1.0)
    raise ValueError(f"sparsity_loss: unknown kind '{kind}'")


def crease_weight(normals_a: Tensor, normals_b: Tensor, sharpness: float = 4.0) -> Tensor:
    """[N] in [0, 1]: ((1 + n_a.n_b) / 2)^sharpness; ~1 on smooth surface, small across creases."""
    cos = (normals_a * normals_b).sum(-1).clamp(-1.0, 1.0)
    return (0.5 * (1.0 + cos)) ** sharpness


def boundary_smoothness_loss(probs_a: Tensor, probs_b: Tensor, curvature_weight: Tensor | None = None) -> Tensor:
    """Mean w |A(p) - A(p + eps)|^2 (summed over K) for neighbouring points; w [N] (e.g.
    :func:`crease_weight`) lowers the penalty across high curvature, where material edges belong."""
    d = ((probs_a - probs_b) ** 2).sum(-1)
    if curvature_weight is None:
        return safe_mean(d)
    return safe_mean(d * curvature_weight)


def energy_conservation_loss(reflectance: Tensor) -> Tensor:
    """mean relu(reflectance - 1)^2 over points (reflectance [N], directional albedo)."""
    return safe_mean(F.relu(reflectance - 1.0).pow(2))


def range_loss(params: Tensor, lo: float, hi: float) -> Tensor:
    """mean (relu(lo - p)^2 + relu(p - hi)^2): zero inside [lo, hi]."""
    return safe_mean(F.relu(lo - params).pow(2) + F.relu(params - hi).pow(2))


def smoothness_loss(params_a: Tensor, params_b: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean over points of |params(p) - params(p + eps)|^2 summed over the last dim; optional weight [N]."""
    d = ((params_a - params_b) ** 2).sum(-1)
    return safe_mean(d if weight is None else d * weight)


# ----------------------------------------------------------------------------- EM (phase D)


def em_posterior(residuals: Tensor, temperature: float) -> Tensor:
    """E-step: posterior over heads softmax(-residual / T); residuals [N, K] (per-head photometric
    error, e.g. |R_k - I|^2 summed over rgb) -> [N, K], detached (a target)."""
    return torch.softmax(-residuals.detach() / temperature, dim=-1)


def soft_cross_entropy(probs: Tensor, targets: Tensor) -> Tensor:
    """Mean over points of -sum_k q_k log p_k: probs p [N, K] against soft targets q [N, K]."""
    return safe_mean(-(targets * probs.clamp_min(_EPS).log()).sum(-1))


def em_assignment_loss(probs: Tensor, posterior: Tensor) -> Tensor:
    """M-step for the assignment: :func:`soft_cross_entropy` of probs [N, K] to the posterior (detached)."""
    return soft_cross_entropy(probs, posterior.detach())


# ----------------------------------------------------------------------------- head pre-fit


def head_fit_loss(head_rgb: Tensor, opacity: Tensor, target: Tensor, skip: int) -> Tensor:
    """Mean L1 of each head's own image head_rgb [n, K, 3] to the target [n, 3], over rays with opacity
    [n, 1] > 0.9 (the heads' images hold no background) and every head but ``skip`` (the one rendering)."""
    K = head_rgb.shape[1]
    keep = opacity[:, 0] > 0.9
    others = [k for k in range(K) if k != skip]
    if not others or not bool(keep.any()):
        return head_rgb.sum() * 0.0
    return (head_rgb[keep][:, others] - target[keep, None]).abs().mean()
