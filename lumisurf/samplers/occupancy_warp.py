"""Warp kernel for :meth:`OccupancyGrid.ray_bounds` (the plain-torch method is its twin and the test reference).

One thread per ray marches the same ``n_steps`` stratum centres as the torch code, looks each point up in the
occupancy grid and keeps the first and last occupied step, so no ``[n_rays, n_steps, 3]`` tensor is built
(the torch path spends about 0.4 s of a 200x200 render there). Float32 only; on any other dtype, without Warp,
or when a launch fails, :func:`ray_bounds_warp` returns None and the caller uses the torch twin.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:
    import warp as wp
except Exception:  # pragma: no cover - depends on the environment
    wp = None

_FAILED: set[str] = set()  # device types where the kernel failed once

if wp is not None:

    @wp.kernel
    def _bounds_kernel(
        o: wp.array2d(dtype=float),
        d: wp.array2d(dtype=float),
        near: wp.array(dtype=float),
        far: wp.array(dtype=float),
        occ: wp.array3d(dtype=wp.uint8),
        res: int,
        bound: float,
        cell: float,
        n_steps: int,
        first: wp.array(dtype=int),
        last: wp.array(dtype=int),
    ):
        r = wp.tid()
        t0 = near[r]
        span = far[r] - t0
        first[r] = -1
        last[r] = -1
        for k in range(n_steps):
            u = (float(k) + 0.5) / float(n_steps)
            t = t0 + span * u
            ix = int(wp.floor((o[r, 0] + d[r, 0] * t + bound) / cell))
            iy = int(wp.floor((o[r, 1] + d[r, 1] * t + bound) / cell))
            iz = int(wp.floor((o[r, 2] + d[r, 2] * t + bound) / cell))
            if ix >= 0 and ix < res and iy >= 0 and iy < res and iz >= 0 and iz < res:  # noqa: SIM102 - Warp kernel
                if occ[ix, iy, iz] != wp.uint8(0):
                    if first[r] < 0:
                        first[r] = k
                    last[r] = k


def ray_bounds_warp(
    occupied: Tensor, bound: float, cell: float, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, n_steps: int
) -> tuple[Tensor, Tensor] | None:
    """First and last occupied step ``[n_rays]`` (int64, -1: none) of rays ``origins``, ``dirs`` ``[n_rays, 3]``
    over ``[near, far]`` ``[n_rays, 1]``; None when the kernel cannot run here."""
    dev = origins.device.type
    if wp is None or dev in _FAILED or origins.dtype != torch.float32 or origins.shape[0] == 0:
        return None
    try:
        wp.init()  # no-op after the first call
        n = origins.shape[0]
        first = torch.empty(n, dtype=torch.int32, device=origins.device)
        last = torch.empty_like(first)
        grid = occupied.to(torch.uint8).contiguous()
        arrays = [wp.from_torch(t.contiguous()) for t in (origins, dirs, near.reshape(-1), far.reshape(-1))]
        wp.launch(
            _bounds_kernel,
            dim=n,
            device=wp.device_from_torch(origins.device),
            inputs=[
                *arrays,
                wp.from_torch(grid, dtype=wp.uint8),
                occupied.shape[0],
                float(bound),
                float(cell),
                int(n_steps),
                wp.from_torch(first),
                wp.from_torch(last),
            ],
        )
        return first.long(), last.long()
    except Exception:  # compile or launch failure: the torch twin from now on, for this device type
        _FAILED.add(dev)
        return None
