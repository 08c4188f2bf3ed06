"""Ray geometry shared by the samplers and the secondary-ray renderers (rays in the normalised frame)."""

from __future__ import annotations

import torch
from torch import Tensor


def near_far_sphere(
    origins: Tensor, dirs: Tensor, radius: float = 1.0, min_near: float = 0.05
) -> tuple[Tensor, Tensor, Tensor]:
    """Entry/exit distances of rays with the sphere ``|x| = radius``.

    ``origins``, ``dirs`` (unit): ``[n_rays, 3]``. Returns ``near`` ``[n_rays, 1]`` (at least
    ``min_near``), ``far`` ``[n_rays, 1]`` and ``hit`` ``[n_rays]`` bool. Rays that miss (or whose
    sphere lies behind them) get ``near = far`` = distance to the point closest to the centre
    (at least ``min_near``), so their sample intervals are empty but finite.
    """
    b = (origins * dirs).sum(-1, keepdim=True)  # [n_rays, 1]
    c = (origins * origins).sum(-1, keepdim=True) - radius * radius
    disc = b * b - c
    root = torch.sqrt(disc.clamp_min(0.0))
    t_in, t_out = -b - root, -b + root
    hit = (disc > 0) & (t_out > min_near)  # [n_rays, 1]
    closest = (-b).clamp_min(min_near)
    near = torch.where(hit, t_in.clamp_min(min_near), closest)
    far = torch.where(hit, t_out, closest)
    return near, far, hit.squeeze(-1)
