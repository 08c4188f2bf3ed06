"""Stage I's lobe width against Stage II's GGX roughness.

Stage I (NeRO shading, ``encodings/ide.py``) blurs its light with a von Mises-Fisher lobe of concentration
1 / rho around the reflected direction: band l of the light is scaled by exp(-l (l + 1) rho / 2). Stage II
(``shading/brdf.py``) integrates the light against a GGX lobe with alpha = roughness^2. The two "roughness"
numbers are different scales: a GGX roughness of 0.3 blurs like rho = 0.04 and GGX 1.0 like rho = 0.41.

Matching rule: the first band. For GGX roughness r at normal incidence, A1(r) = E[cos angle(l, mirror)]
over reflected directions l weighted as the split-sum pre-filter weights them (half vectors drawn from
D(h) (n.h), weight n.l, Karis 2013), and rho(r) = -log A1(r), the vMF width with the same A1. A1(1) = 2/3
exactly (constant D), as for a cosine lobe. ``ggx_from_ide`` inverts the monotone table.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

TABLE_SIZE = 257
_QUADRATURE = 4096


def ggx_first_band(roughness: float) -> float:
    """A1 in (2/3, 1] of the reflected GGX lobe of ``roughness`` (alpha = roughness^2, floored at 1e-4)."""
    alpha = max(roughness * roughness, 1e-4)
    a2 = alpha * alpha
    th = (torch.arange(_QUADRATURE, dtype=torch.float64) + 0.5) * (math.pi / 4) / _QUADRATURE  # half angle
    c = torch.cos(th)
    d = a2 / (math.pi * (c * c * (a2 - 1.0) + 1.0) ** 2)
    w = d * c * torch.sin(th) * torch.cos(2.0 * th)  # pdf of h, times n.l (the reflected angle is 2 th)
    return float((w * torch.cos(2.0 * th)).sum() / w.sum())


def ide_width(roughness: float) -> float:
    """The vMF width rho (IDE roughness, >= 0) that blurs like GGX ``roughness`` in [0, 1]."""
    return -math.log(ggx_first_band(roughness))


@lru_cache(maxsize=1)
def _table() -> tuple[Tensor, Tensor]:
    """(GGX roughness [T], IDE width [T]), both increasing, roughness on a uniform grid over [0, 1]."""
    r = torch.linspace(0.0, 1.0, TABLE_SIZE, dtype=torch.float64)
    rho = torch.tensor([ide_width(float(v)) for v in r], dtype=torch.float64)
    return r, torch.cummax(rho, 0).values  # monotone against quadrature round-off


def ggx_from_ide(rho: Tensor) -> Tensor:
    """GGX roughness [...] in [0, 1] that blurs like IDE width ``rho`` [...] (>= 0; wider than GGX 1 -> 1)."""
    r, w = (t.to(rho.device) for t in _table())
    x = rho.detach().double().clamp(float(w[0]), float(w[-1]))
    hi = torch.searchsorted(w, x.reshape(-1)).clamp(1, TABLE_SIZE - 1)
    lo = hi - 1
    t = ((x.reshape(-1) - w[lo]) / (w[hi] - w[lo]).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (r[lo] + t * (r[hi] - r[lo])).reshape(rho.shape).to(rho.dtype)
