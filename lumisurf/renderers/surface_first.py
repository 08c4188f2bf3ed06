"""Surface-first rendering maths for a trained SDF: sphere-trace each ray to its first zero crossing, then
volume-render only a narrow band of samples around it.

NeuS' weight along a ray is the logistic density of the SDF (width ``1 / inv_s``), so once the first crossing
``t*`` is known, nearly all of a ray's weight lies where ``|sdf| < k / inv_s``, i.e. within
``k / (inv_s |cos|)`` of ``t*`` (``|cos|`` the SDF's slope along the ray). Outside that band a ray only picks
up weight where it passes close to the surface without crossing it (silhouettes, thin parts); the tracer
records how close each ray came, and such rays are flagged for the full sampler instead.

Pure functions of ``[n_rays]`` / ``[n_rays, n_samples]`` tensors, no autograd (rendering only). Rays are
``o + t d`` with unit ``d``; ``t`` in scene units; ``sdf_fn`` maps points ``[N, 3]`` to ``[N]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

SdfFn = Callable[[Tensor], Tensor]


@dataclass
class TraceResult:
    """First crossings of a batch of rays (all ``[n_rays]``)."""

    t: Tensor  # distance of the first zero crossing (undefined where not ``hit``)
    slope: Tensor  # |d sdf / dt| across the crossing, from the final bracket (1 where not ``hit``)
    hit: Tensor  # bool: a sign change + -> - was bracketed and refined
    clearance: Tensor  # smallest local minimum of the SDF the tracer passed (a miss: its last point counts too)
    t_close: Tensor  # where that minimum was (the closest approach)
    done: Tensor  # bool: the ray hit or left [near, far]; False: out of steps (or it started inside)
    evals: int = 0  # SDF evaluations spent (all rays together)


def _secant(
    sdf_fn: SdfFn, o: Tensor, d: Tensor, t0: Tensor, s0: Tensor, t1: Tensor, s1: Tensor, iters: int
) -> tuple[Tensor, Tensor]:
    """Regula falsi on brackets ``s0 > 0 >= s1``; returns the root estimate and |slope| of the last bracket."""
    for _ in range(iters):
        t = t0 + s0 * (t1 - t0) / (s0 - s1).clamp_min(1e-12)
        s = sdf_fn(o + d * t[:, None])
        pos = s > 0
        t0, s0 = torch.where(pos, t, t0), torch.where(pos, s, s0)
        t1, s1 = torch.where(pos, t1, t), torch.where(pos, s1, s)
    t = t0 + s0 * (t1 - t0) / (s0 - s1).clamp_min(1e-12)
    slope = (s0 - s1) / (t1 - t0).clamp_min(1e-12)
    return t, slope


def _closer(clearance: Tensor, t_close: Tensor, rows: Tensor, s: Tensor, t: Tensor) -> None:
    """In place: where ``s[rows]`` is below ``clearance[rows]``, record it and its distance ``t[rows]``."""
    better = rows[s[rows] < clearance[rows]]
    clearance[better], t_close[better] = s[better], t[better]


@torch.no_grad()
def sphere_trace(
    sdf_fn: SdfFn,
    o: Tensor,
    d: Tensor,
    near: Tensor,
    far: Tensor,
    max_steps: int = 64,
    relax: float = 0.9,
    min_step: float = 1e-3,
    refine: int = 3,
    approaching: bool = True,
) -> TraceResult:
    """Relaxed sphere tracing from ``near`` to ``far`` (``[n_rays]``) to the first + -> - crossing.

    Steps are ``max(relax * sdf, min_step)`` (the learned SDF is only roughly 1-Lipschitz, hence ``relax``
    < 1); a step that lands at a negative SDF brackets the crossing, which ``refine`` regula-falsi steps
    locate. A ray whose SDF is negative at ``near`` is not ``done`` (nothing to trace from outside).
    ``clearance`` is the smallest SDF at a local minimum along the ray (falling, then rising: a near miss)
    or at the last point of a miss that was still falling; only approaching stretches carry NeuS density
    (receding ones have none at cos-anneal ratio 1). ``approaching``: whether the SDF counts as falling
    into ``near`` (False when tracing on from inside or behind a surface).
    """
    n = o.shape[0]
    t = near.clone()
    t_prev, s_prev = near.clone(), torch.full_like(near, float("inf"))
    falling = torch.full((n,), approaching, dtype=torch.bool, device=o.device)
    clearance, t_close = torch.full_like(near, float("inf")), near.clone()
    hit = torch.zeros(n, dtype=torch.bool, device=o.device)
    done = far <= near
    t_in, s_in = torch.zeros_like(near), torch.zeros_like(near)  # the bracket's inside end
    active = (~done).nonzero()[:, 0]
    evals = 0
    for step in range(max_steps):
        if active.numel() == 0:
            break
        ta = t[active]
        s = sdf_fn(o[active] + d[active] * ta[:, None])
        evals += active.numel()
        landed = (s <= 0) & (step > 0)
        hit[active[landed]], done[active[landed]] = True, True
        t_in[active[landed]], s_in[active[landed]] = ta[landed], s[landed]
        going = s > 0
        ga, sg = active[going], s[going]
        if step > 0:
            rising = falling[ga] & (sg > s_prev[ga])  # the previous point was a local minimum
            _closer(clearance, t_close, ga[rising], s_prev, t_prev)
            falling[ga] = sg < s_prev[ga]
        t_prev[ga], s_prev[ga] = ta[going], sg
        t_next = ta[going] + (relax * sg).clamp_min(min_step)
        left = t_next >= far[ga]
        _closer(clearance, t_close, ga[left & falling[ga]], s_prev, t_prev)
        done[ga[left]] = True
        t[ga] = t_next
        active = ga[~left]
    slope = torch.ones_like(near)
    if hit.any():
        idx = hit.nonzero()[:, 0]
        t[idx], slope[idx] = _secant(sdf_fn, o[idx], d[idx], t_prev[idx], s_prev[idx], t_in[idx], s_in[idx], refine)
        evals += refine * idx.numel()
    return TraceResult(t=t, slope=slope, hit=hit, clearance=clearance, t_close=t_close, done=done, evals=evals)


@torch.no_grad()
def exit_trace(
    sdf_fn: SdfFn,
    o: Tensor,
    d: Tensor,
    t0: Tensor,
    far: Tensor,
    max_steps: int = 32,
    relax: float = 0.9,
    min_step: float = 1e-3,
    tol: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """March on from ``t0`` (``[n_rays]``, just behind a crossing, possibly still inside) to where the ray
    leaves the surface (SDF > 0) with steps ``max(relax |sdf|, min_step)``.

    Returns the exit distance and ``ok`` (``[n_rays]``): the ray left (or reached ``far``) while the SDF
    only rose, i.e. through a receding stretch without NeuS density. A ray whose SDF falls more than ``tol``
    below the lowest value met so far goes deeper inside, where the render would absorb it: not ``ok``.
    """
    t, s_low = t0.clone(), torch.full_like(t0, float("inf"))  # s_low: the lowest SDF met so far
    ok = torch.zeros(t0.shape[0], dtype=torch.bool, device=t0.device)
    active = torch.arange(t0.shape[0], device=t0.device)
    for _ in range(max_steps):
        if active.numel() == 0:
            break
        s = sdf_fn(o[active] + d[active] * t[active][:, None])
        out = s > 0
        ok[active[out]] = True
        deeper = ~out & torch.isfinite(s_low[active]) & (s < s_low[active] - tol)
        going = ~out & ~deeper
        ga = active[going]
        s_low[ga] = torch.minimum(s_low[ga], s[going])
        t[ga] = t[ga] + (relax * s[going].abs()).clamp_min(min_step)
        left = t[ga] >= far[ga]
        ok[ga[left]] = True
        t[ga[left]] = far[ga[left]]
        active = ga[~left]
    return t, ok


@torch.no_grad()
def descend(
    sdf_fn: SdfFn,
    o: Tensor,
    d: Tensor,
    t0: Tensor,
    far: Tensor,
    floor: float,
    max_steps: int = 16,
    relax: float = 0.9,
    min_step: float = 1e-3,
) -> Tensor:
    """From a crossing ``t0`` (``[n_rays]``) march inward with steps ``max(relax |sdf|, min_step)`` until the
    SDF is down to ``floor`` (< 0: the ray is absorbed there), starts rising again (a thin part: its bottom
    was passed) or ``far``; returns that distance (``[n_rays]``), where a band behind the crossing ends."""
    t = t0 + min_step
    s_prev = torch.zeros_like(t0)
    active = torch.arange(t0.shape[0], device=t0.device)
    for _ in range(max_steps):
        active = active[t[active] < far[active]]
        if active.numel() == 0:
            break
        s = sdf_fn(o[active] + d[active] * t[active][:, None])
        going = (s > floor) & (s <= s_prev[active])
        ga = active[going]
        s_prev[ga] = s[going]
        t[ga] = t[ga] + (relax * s[going].abs()).clamp_min(min_step)
        active = ga
    return torch.minimum(t, far)


def band_half_width(slope: Tensor, inv_s: float, width: float, min_slope: float = 0.1) -> Tensor:
    """Half-width in ``t`` of the band ``|sdf| < width / inv_s`` around a crossing with SDF slope ``slope``
    (``[n_rays]``; slopes below ``min_slope``, grazing rays, are clamped so the band stays finite)."""
    return width / (inv_s * slope.clamp(min_slope, 1.0))


def band_samples(start: Tensor, end: Tensor, near: Tensor, far: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
    """``n_samples`` evenly spaced distances over ``[start, end]`` clipped to ``[near, far]`` (all ``[n_rays]``);
    returns sorted interval starts ``t`` ``[n_rays, n_samples]`` and the band's end ``[n_rays, 1]`` (where the
    last interval ends)."""
    lo = torch.maximum(start, near)
    hi = torch.maximum(torch.minimum(end, far), lo)
    u = torch.arange(n_samples, dtype=start.dtype, device=start.device) / n_samples  # [S]
    return lo[:, None] + (hi - lo)[:, None] * u, hi[:, None]


def clear_of_surface(trace: TraceResult, inv_s: float, width: float) -> Tensor:
    """Rays ``[n_rays]`` the tracer finished without a crossing and without passing within ``width / inv_s``
    of the surface: their NeuS opacity is below about ``sigmoid(-width)``, so they render as empty."""
    return trace.done & ~trace.hit & (trace.clearance >= width / inv_s)


def trusted_hits(trace: TraceResult, inv_s: float, width: float) -> Tensor:
    """Hits ``[n_rays]`` whose band holds the ray's weight up to the crossing: no near miss before it."""
    return trace.hit & (trace.clearance >= width / inv_s)
