"""Volume rendering maths (NeuS): SDF -> opacity -> compositing weights -> per-ray quantities.

Pure functions over ``[n_rays, n_samples]`` tensors; device and dtype come from the inputs.
Distances ``t`` along a ray are in scene units (unit rays, so depth = t). Samples are ordered
front to back along each ray.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_ALPHA_EPS = 1e-5  # NeuS' stabiliser in (Phi(prev) - Phi(next) + eps) / (Phi(prev) + eps)


def _interval_alpha(prev_cdf: Tensor, next_cdf: Tensor) -> Tensor:
    """Discrete opacity of an interval from the logistic CDF at its ends, clipped to [0, 1]."""
    return ((prev_cdf - next_cdf + _ALPHA_EPS) / (prev_cdf + _ALPHA_EPS)).clip(0.0, 1.0)


def neus_alpha(sdf: Tensor, true_cos: Tensor, dists: Tensor, inv_s: Tensor, cos_anneal_ratio: float = 1.0) -> Tensor:
    """NeuS discrete opacity of each sample interval (Wang et al. 2021, eq. 13) with cos annealing.

    ``sdf`` is evaluated at the interval mid point, ``true_cos`` = dot(ray dir, sdf gradient)
    there, ``dists`` the interval length (all ``[n_rays, n_samples]``). ``inv_s`` (the
    sharpness s of the logistic density, 1/length) is ``[n_rays, 1]`` or a 0-d tensor.
    ``cos_anneal_ratio`` goes 0 -> 1 during training (0: softened cos, 1: exact NeuS).
    Returns alpha ``[n_rays, n_samples]`` in [0, 1].
    """
    r = cos_anneal_ratio
    iter_cos = -(F.relu(-true_cos * 0.5 + 0.5) * (1.0 - r) + F.relu(-true_cos) * r)
    half_step = iter_cos * dists * 0.5  # [n_rays, n_samples]
    prev_cdf = torch.sigmoid((sdf - half_step) * inv_s)
    next_cdf = torch.sigmoid((sdf + half_step) * inv_s)
    return _interval_alpha(prev_cdf, next_cdf)


def alpha_from_sdf_interval(sdf_prev: Tensor, sdf_next: Tensor, inv_s) -> Tensor:
    """Opacity of intervals from the SDF at their start and end points (used by up-sampling).

    ``sdf_prev``, ``sdf_next``: ``[n_rays, n_intervals]``; ``inv_s`` a float or a tensor that
    broadcasts. Returns ``((Phi(prev) - Phi(next) + 1e-5) / (Phi(prev) + 1e-5)).clip(0, 1)``.
    """
    return _interval_alpha(torch.sigmoid(sdf_prev * inv_s), torch.sigmoid(sdf_next * inv_s))


def transmittance(alpha: Tensor) -> Tensor:
    """Light reaching each sample: exclusive cumulative product of ``1 - alpha``.

    ``alpha`` ``[n_rays, n_samples]`` -> ``T`` ``[n_rays, n_samples]`` with ``T[:, 0] = 1``.
    """
    ones = torch.ones_like(alpha[:, :1])
    return torch.cumprod(torch.cat([ones, 1.0 - alpha[:, :-1]], dim=-1), dim=-1)


def render_weights(alpha: Tensor) -> Tensor:
    """Compositing weights ``alpha * transmittance`` ``[n_rays, n_samples]`` (sum <= 1 per ray)."""
    return alpha * transmittance(alpha)


def accumulate(weights: Tensor, values: Tensor | None = None) -> Tensor:
    """Weighted sum over samples.

    ``weights`` ``[n_rays, n_samples]``; ``values`` ``[n_rays, n_samples, C]`` -> ``[n_rays, C]``.
    With ``values=None`` returns the opacity (sum of weights) ``[n_rays, 1]``.
    """
    if values is None:
        return weights.sum(dim=-1, keepdim=True)
    return (weights.unsqueeze(-1) * values).sum(dim=-2)


def composite_background(rgb: Tensor, opacity: Tensor, background: Tensor) -> Tensor:
    """Over-composite a (premultiplied) ray color on a background.

    ``rgb`` ``[n_rays, 3]``, ``opacity`` ``[n_rays, 1]``, ``background`` ``[n_rays, 3]`` or ``[3]``.
    Returns ``rgb + (1 - opacity) * background`` ``[n_rays, 3]``.
    """
    return rgb + (1.0 - opacity) * background


def render_depth(weights: Tensor, t_mid: Tensor) -> Tensor:
    """Expected distance ``sum(w * t)`` ``[n_rays, 1]``; unnormalised (divide by opacity if wanted)."""
    return (weights * t_mid).sum(dim=-1, keepdim=True)
