"""Ray samplers: sphere near/far, stratified and inverse-CDF sampling, NeuS up-sampling, NeRF++ outside.

Pure functions. Rays are ``x(t) = origin + t * dir`` with unit ``dir``, so ``t`` is a distance in
scene units (the object sits inside the unit sphere after normalisation). ``t`` tensors are
``[n_rays, n_samples]`` sorted increasingly. Random draws take an optional ``torch.Generator``
(its device is used for the draw, the result moves to the inputs' device).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.renderers.rays import near_far_sphere  # noqa: F401  (part of the samplers API)
from lumisurf.renderers.volume import alpha_from_sdf_interval, render_weights


def _uniform(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """U[0, 1) samples of ``shape`` with ``like``'s dtype and device."""
    if generator is None:
        return torch.rand(shape, dtype=like.dtype, device=like.device)
    u = torch.rand(shape, generator=generator, dtype=like.dtype, device=generator.device)
    return u.to(like.device)


def stratified_samples(
    near: Tensor, far: Tensor, n_samples: int, perturb: bool, generator: torch.Generator | None = None
) -> Tensor:
    """``n_samples`` distances in ``[near, far]`` (both ``[n_rays, 1]``), one per equal stratum.

    Deterministic: stratum mid points. ``perturb``: uniform within each stratum.
    Returns sorted ``t`` ``[n_rays, n_samples]``.
    """
    n_rays = near.shape[0]
    idx = torch.arange(n_samples, dtype=near.dtype, device=near.device)
    if perturb:
        u = (idx + _uniform((n_rays, n_samples), near, generator)) / n_samples
    else:
        u = ((idx + 0.5) / n_samples).expand(n_rays, n_samples)
    return near + (far - near) * u


def sample_pdf(
    bins: Tensor, weights: Tensor, n_samples: int, deterministic: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Inverse-CDF sampling of the piecewise-constant pdf given by ``weights`` on ``bins``.

    ``bins`` ``[n_rays, S + 1]`` sorted edges, ``weights`` ``[n_rays, S]`` (non-negative, a small
    floor of 1e-5 keeps all-zero rays uniform). ``deterministic`` uses evenly spaced quantiles.
    Returns sorted, detached samples ``[n_rays, n_samples]`` within ``[bins[:, 0], bins[:, -1]]``.
    """
    bins, weights = bins.detach(), weights.detach()
    n_rays = weights.shape[0]
    w = weights.clamp_min(0.0) + 1e-5
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], dim=-1)  # [n_rays, S+1]
    if deterministic:
        u = torch.linspace(
            0.5 / n_samples, 1.0 - 0.5 / n_samples, n_samples, dtype=bins.dtype, device=bins.device
        ).expand(n_rays, n_samples)
    else:
        u = torch.sort(_uniform((n_rays, n_samples), bins, generator), dim=-1).values
    u = u.contiguous()
    inds = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (inds - 1).clamp(0, cdf.shape[-1] - 1)
    above = inds.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    frac = ((u - cdf_lo) / denom).clamp(0.0, 1.0)
    return bin_lo + frac * (bin_hi - bin_lo)


def section_weights(origins: Tensor, dirs: Tensor, t: Tensor, sdf: Tensor, inv_s, radius: float = 1.0) -> Tensor:
    """NeuS' estimate of the compositing weights of the ``S - 1`` intervals between samples (sec. 3.4).

    ``t`` ``[n_rays, S]`` sorted, ``sdf`` ``[n_rays, S]`` at those points. The slope of the SDF between
    consecutive samples (min with the previous interval's, clamped to [-1e3, 0], so only surfaces the ray enters
    count; zero for intervals with both ends outside the sphere of ``radius``) gives interval SDFs and opacities
    at the sharpness ``inv_s``. Returns detached weights ``[n_rays, S - 1]``.
    """
    t, sdf = t.detach(), sdf.detach()
    pts = origins.detach()[:, None, :] + dirs.detach()[:, None, :] * t[..., None]  # [n_rays, S, 3]
    r = torch.linalg.norm(pts, dim=-1)  # [n_rays, S]
    inside = (r[:, :-1] < radius) | (r[:, 1:] < radius)  # [n_rays, S-1]
    prev_sdf, next_sdf = sdf[:, :-1], sdf[:, 1:]
    dist = t[:, 1:] - t[:, :-1]
    cos = (next_sdf - prev_sdf) / (dist + 1e-5)
    prev_cos = torch.cat([torch.zeros_like(cos[:, :1]), cos[:, :-1]], dim=-1)
    cos = torch.minimum(cos, prev_cos).clip(-1e3, 0.0) * inside.to(cos.dtype)
    mid_sdf = 0.5 * (prev_sdf + next_sdf)
    alpha = alpha_from_sdf_interval(mid_sdf - cos * dist * 0.5, mid_sdf + cos * dist * 0.5, inv_s)
    return render_weights(alpha)


def neus_upsample(
    origins: Tensor, dirs: Tensor, t: Tensor, sdf: Tensor, n_importance: int, inv_s: float, radius: float = 1.0
) -> Tensor:
    """One NeuS hierarchical up-sampling step (Wang et al. 2021, sec. 3.4).

    The :func:`section_weights` of ``t``, ``sdf`` ``[n_rays, S]`` at the fixed ``inv_s`` (NeuS: ``64 * 2**i`` at
    step ``i``) give a pdf over the ``S - 1`` intervals; new samples are drawn deterministically from it.
    Returns detached ``t`` ``[n_rays, n_importance]``.
    """
    weights = section_weights(origins, dirs, t, sdf, inv_s, radius)  # [n_rays, S-1]
    return sample_pdf(t.detach(), weights, n_importance, deterministic=True).detach()


def significant_samples(
    t_ref: Tensor, weights_ref: Tensor, t: Tensor, threshold: float, also: Tensor | None = None
) -> Tensor:
    """Which samples of ``t`` ``[n_rays, S']`` (sorted, a refinement of ``t_ref`` ``[n_rays, S]``: every sample of
    ``t_ref`` is in ``t``) lie in an interval of ``t_ref`` whose weight ``weights_ref`` ``[n_rays, S - 1]`` (e.g.
    :func:`section_weights`) exceeds ``threshold``, or next to one (one interval of margin on each side, for
    the estimate's error). A sample's interval runs to the next sample, so it lies inside the ``t_ref`` interval
    that holds its start; samples at or after the last ``t_ref`` sample take the last interval.
    ``also`` ``[n_rays, S - 1]`` (bool) marks intervals to keep whatever their weight (e.g. where the SDF values
    are only estimates). Returns ``keep`` ``[n_rays, S']`` (bool): the samples whose compositing weight can matter.
    """
    sig = weights_ref > threshold  # [n_rays, S-1]
    if also is not None:
        sig = sig | also
    pad = torch.zeros_like(sig[:, :1])
    sig = sig | torch.cat([sig[:, 1:], pad], -1) | torch.cat([pad, sig[:, :-1]], -1)
    j = torch.searchsorted(t_ref.detach().contiguous(), t.detach().contiguous(), right=True) - 1  # [n_rays, S']
    return sig.gather(1, j.clamp(0, sig.shape[1] - 1))


def merge_samples(t_a: Tensor, t_b: Tensor) -> tuple[Tensor, Tensor]:
    """Merge two sample sets ``[n_rays, A]`` and ``[n_rays, B]`` into sorted ``[n_rays, A + B]``.

    Also returns the permutation ``idx`` such that ``t_sorted = cat([t_a, t_b]).gather(1, idx)``;
    gather per-sample values with the same ``idx`` (expand it for trailing channels).
    """
    t_sorted, idx = torch.sort(torch.cat([t_a, t_b], dim=-1), dim=-1)
    return t_sorted, idx


def interval_dists(t: Tensor, far: Tensor, last: float | None = None) -> tuple[Tensor, Tensor]:
    """Interval lengths and mid points of samples ``t`` ``[n_rays, S]``.

    ``dists[:, i] = t[:, i+1] - t[:, i]``; the last one is ``far - t[:, -1]`` (``far`` ``[n_rays, 1]``,
    clamped at 0) or the constant ``last``. ``t_mid = t + dists / 2``. Both ``[n_rays, S]``.
    """
    if last is None:
        tail = (far - t[:, -1:]).clamp_min(0.0)
    else:
        tail = torch.full_like(t[:, -1:], float(last))
    dists = torch.cat([t[:, 1:] - t[:, :-1], tail], dim=-1)
    return dists, t + 0.5 * dists


def background_samples(far: Tensor, n_samples: int, perturb: bool, generator: torch.Generator | None = None) -> Tensor:
    """NeRF++ outside samples beyond ``far`` ``[n_rays, 1]``, uniform in inverse depth.

    Sample ``k`` sits at ``t = far / u_k`` with ``u`` from ``1 - 1/(n+1)`` down to ``1e-3``
    (so ``far < t <= 1000 far``); ``perturb`` jitters ``u`` within its stratum.
    Returns sorted ``t`` ``[n_rays, n_samples]``, all ``> far``.
    """
    n_rays = far.shape[0]
    u = torch.linspace(1e-3, 1.0 - 1.0 / (n_samples + 1), n_samples, dtype=far.dtype, device=far.device).expand(
        n_rays, n_samples
    )
    if perturb and n_samples > 1:
        mids = 0.5 * (u[:, 1:] + u[:, :-1])
        upper = torch.cat([mids, u[:, -1:]], dim=-1)
        lower = torch.cat([u[:, :1], mids], dim=-1)
        u = lower + (upper - lower) * _uniform((n_rays, n_samples), far, generator)
    return far / torch.flip(u, dims=[-1])


def contract_inverted_sphere(points: Tensor) -> Tensor:
    """NeRF++ inverted-sphere coordinates ``(x / |x|, 1 / |x|)`` ``[..., 4]`` for points ``[..., 3]``
    outside the unit sphere (``1/|x|`` in (0, 1])."""
    norm = torch.linalg.norm(points, dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.cat([points / norm, 1.0 / norm], dim=-1)
