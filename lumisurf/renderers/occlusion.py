"""Occlusion probability of secondary rays through an SDF (NeRO's target for the occlusion MLP).

A ray leaves a surface point along a direction (the reflected view direction) and is marched to where it
leaves the sphere ``|x| = radius``. NeuS opacities of the intervals between consecutive samples, with the
SDF slope taken from the two end values (finite differences, as NeuS up-sampling and NeRO do) and only
intervals where the SDF decreases counted (the ray enters a surface there), give the probability that the
ray is blocked: ``1 - prod(1 - alpha)``. No gradients: the result is a training target.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lumisurf.renderers.rays import near_far_sphere
from lumisurf.renderers.volume import alpha_from_sdf_interval


def entering_alpha(t: Tensor, sdf: Tensor, inv_s: float) -> Tensor:
    """Opacity of the intervals between samples ``t`` ``[M, S]`` (sorted) with SDF values ``sdf`` ``[M, S]``.

    Intervals where the SDF does not decrease (the ray is leaving or moving along a surface) get 0.
    Returns ``[M, S - 1]`` in [0, 1].
    """
    prev_sdf, next_sdf = sdf[:, :-1], sdf[:, 1:]
    entering = (next_sdf < prev_sdf).to(sdf.dtype)
    return alpha_from_sdf_interval(prev_sdf, next_sdf, inv_s) * entering


@torch.no_grad()
def march_occlusion(
    sdf_fn: Callable[[Tensor], Tensor],
    points: Tensor,
    dirs: Tensor,
    inv_s: float,
    n_steps: int,
    t_start: float = 0.0,
    radius: float = 1.0,
    occupied_fn: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Probability ``[M, 1]`` that rays from ``points`` ``[M, 3]`` along unit ``dirs`` ``[M, 3]`` hit the SDF.

    ``sdf_fn``: points ``[P, 3]`` -> sdf ``[P]`` (normalised frame). The SDF is evaluated at ``n_steps``
    evenly spaced distances from ``t_start`` to the exit of the sphere of ``radius``; ``inv_s`` is the NeuS
    sharpness (1 / length). Rays starting outside that sphere, or leaving it before ``t_start``, get 0.

    ``occupied_fn`` (points ``[P, 3]`` -> bool ``[P]``, e.g. an occupancy grid's lookup): the SDF is evaluated only
    where it says the surface may be; elsewhere |SDF| is known to be large and it stands at +1e3. An interval from
    such a point into the surface then counts as entering, as it should; one from the object's inside (also
    'far') into a leaving surface counts too, but only behind a surface the ray has already entered.
    """
    m = points.shape[0]
    if m == 0 or n_steps < 2:
        return points.new_zeros(m, 1)
    near, far, hit = near_far_sphere(points, dirs, radius, min_near=t_start)
    inside = points.norm(dim=-1) < radius
    u = torch.linspace(0.0, 1.0, n_steps, dtype=points.dtype, device=points.device)
    t = near + (far - near).clamp_min(0.0) * u  # [M, n_steps]
    x = points[:, None] + dirs[:, None] * t[..., None]  # [M, n_steps, 3]
    if occupied_fn is None:
        sdf = sdf_fn(x.reshape(-1, 3)).reshape(m, n_steps)
    else:
        near_surface = occupied_fn(x.reshape(-1, 3)).nonzero()[:, 0]
        sdf = x.new_full((m * n_steps,), 1e3)
        sdf[near_surface] = sdf_fn(x.reshape(-1, 3)[near_surface]).to(sdf.dtype)
        sdf = sdf.reshape(m, n_steps)
    alpha = entering_alpha(t, sdf, inv_s)  # [M, n_steps - 1]
    miss = torch.prod(1.0 - alpha, dim=-1, keepdim=True)
    return (1.0 - miss) * (hit & inside).to(points.dtype)[:, None]
