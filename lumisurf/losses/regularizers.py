"""Regularisers on field parameters: total variation of the dense hash-grid levels."""

from __future__ import annotations

import torch
from torch import Tensor


def grid_tv_loss(grid) -> Tensor:
    """Mean squared difference of neighbouring vertex features over the dense (un-hashed) levels.

    Dense rows are ``ix + (res+1) * (iy + (res+1) * iz)`` (see ``hash_grid_torch``), so each level
    reshapes to [res+1 (z), res+1 (y), res+1 (x), F]. Hashed levels have no neighbourhood and are skipped.
    """
    terms = []
    layout = grid.layout
    for level in range(min(grid.active_levels, layout.n_levels)):
        if layout.hashed[level]:
            continue
        n = layout.resolutions[level] + 1
        v = grid.params[grid.level_slice(level)].reshape(n, n, n, -1)
        terms += [
            (v[1:] - v[:-1]).pow(2).mean(),
            (v[:, 1:] - v[:, :-1]).pow(2).mean(),
            (v[:, :, 1:] - v[:, :, :-1]).pow(2).mean(),
        ]
    if not terms:
        return grid.params.sum() * 0.0
    return torch.stack(terms).mean()
