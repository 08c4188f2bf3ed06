"""Split-sum GGX pre-integration (Karis 2013): the (n.v, roughness) -> (scale, bias) lookup table.

``specular = light(r, roughness) * (F0 * scale + bias)``. The table is computed here by importance
sampling the GGX normal distribution (Hammersley points), cached on disk, and sampled bilinearly like
NeRO: u = clamp(n.v) along the columns, v = clamp(roughness) along the rows, texel centres at
(i + 0.5) / size. Convention: GGX alpha = roughness^2, height-correlated Smith G.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def hammersley(n: int, dtype=torch.float64) -> Tensor:
    """[n, 2] low-discrepancy points in [0, 1)^2 (i/n, radical inverse of i in base 2)."""
    i = torch.arange(n, dtype=torch.int64)
    bits = i.clone()
    inv = torch.zeros(n, dtype=dtype)
    scale = 0.5
    for _ in range(32):
        inv += (bits & 1).to(dtype) * scale
        bits = bits >> 1
        scale *= 0.5
    return torch.stack([i.to(dtype) / n, inv], -1)


def importance_sample_ggx(xi: Tensor, alpha: Tensor) -> Tensor:
    """Half vectors [..., S, 3] around +z distributed as D_GGX(h) (h.z); xi [S, 2], alpha [..., 1]."""
    phi = 2.0 * math.pi * xi[:, 0]
    a2 = alpha * alpha
    cos_t = torch.sqrt((1.0 - xi[:, 1]) / (1.0 + (a2 - 1.0) * xi[:, 1]))
    sin_t = torch.sqrt((1.0 - cos_t * cos_t).clamp_min(0.0))
    return torch.stack([sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t], -1)


def smith_g_height_correlated(n_dot_v: Tensor, n_dot_l: Tensor, alpha: Tensor) -> Tensor:
    """Height-correlated Smith masking-shadowing for GGX (Heitz 2014); the form that reproduces
    NeRO's / nvdiffrec's table (the separable Schlick k = alpha/2 form is 0.04 off on average)."""
    a2 = alpha * alpha
    lam_v = n_dot_l * torch.sqrt(a2 + (1 - a2) * n_dot_v * n_dot_v)
    lam_l = n_dot_v * torch.sqrt(a2 + (1 - a2) * n_dot_l * n_dot_l)
    return 2.0 * n_dot_v * n_dot_l / (lam_v + lam_l)


def integrate_brdf(n_dot_v: Tensor, roughness: Tensor, n_samples: int = 1024) -> Tensor:
    """Split-sum terms for each (n.v, roughness) pair [K] -> [K, 2] (scale, bias)."""
    xi = hammersley(n_samples)
    nv = n_dot_v.to(torch.float64).clamp(1e-4, 1.0)[:, None]  # [K, 1]
    alpha = roughness.to(torch.float64).clamp_min(1e-4) ** 2
    v = torch.cat([torch.sqrt(1 - nv * nv), torch.zeros_like(nv), nv], -1)  # [K, 3]
    h = importance_sample_ggx(xi, alpha[:, None])  # [K, S, 3]
    v_dot_h = (v[:, None] * h).sum(-1)  # [K, S]
    l_z = 2.0 * v_dot_h * h[..., 2] - nv  # (2 (v.h) h - v).z
    valid = (l_z > 0).to(torch.float64)
    n_dot_l = l_z.clamp_min(1e-8)
    g = smith_g_height_correlated(nv, n_dot_l, alpha[:, None])
    g_vis = g * v_dot_h.clamp_min(0) / (h[..., 2].clamp_min(1e-8) * nv)
    fc = (1.0 - v_dot_h.clamp(0, 1)) ** 5
    scale = ((1 - fc) * g_vis * valid).mean(-1)
    bias = (fc * g_vis * valid).mean(-1)
    return torch.stack([scale, bias], -1)


def compute_lut(size: int = 256, n_samples: int = 1024, chunk: int = 4096) -> np.ndarray:
    """The [size (roughness rows), size (n.v columns), 2] float32 table, texel centres."""
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    rough, nv = torch.meshgrid(c, c, indexing="ij")
    rough, nv = rough.reshape(-1), nv.reshape(-1)
    out = torch.cat(
        [integrate_brdf(nv[i : i + chunk], rough[i : i + chunk], n_samples) for i in range(0, nv.numel(), chunk)]
    )
    return out.reshape(size, size, 2).to(torch.float32).numpy()


def cache_dir() -> Path:
    """Where computed tables live: $LUMISURF_CACHE or ~/.cache/lumisurf."""
    return Path(os.environ.get("LUMISURF_CACHE", Path.home() / ".cache" / "lumisurf"))


def load_lut(size: int = 256, n_samples: int = 1024) -> np.ndarray:
    """The table, computed once and cached as raw float32 (the NeRO/nvdiffrec .bin layout)."""
    path = cache_dir() / f"split_sum_ggx_{size}_{n_samples}.bin"
    if path.exists():
        return np.fromfile(path, np.float32).reshape(size, size, 2)
    lut = compute_lut(size, n_samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    lut.tofile(tmp)
    os.replace(tmp, path)
    return lut


def sample_lut(lut: Tensor, n_dot_v: Tensor, roughness: Tensor) -> Tensor:
    """Bilinear look-up (clamped, texel centres): lut [R, C, 2], n_dot_v / roughness [...] -> [..., 2]."""
    rows, cols = lut.shape[0], lut.shape[1]
    x = (n_dot_v.clamp(0, 1) * cols - 0.5).clamp(0, cols - 1)
    y = (roughness.clamp(0, 1) * rows - 0.5).clamp(0, rows - 1)
    x0, y0 = x.floor().long().clamp(max=cols - 2), y.floor().long().clamp(max=rows - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = lut[y0, x0] * (1 - fx) + lut[y0, x0 + 1] * fx
    bottom = lut[y0 + 1, x0] * (1 - fx) + lut[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def fresnel_f0(albedo: Tensor, metallic: Tensor) -> Tensor:
    """Normal-incidence reflectance [N, 3]: 0.04 for dielectrics, the albedo for metals."""
    return 0.04 * (1.0 - metallic) + albedo * metallic


def specular_albedo(f0: Tensor, lut_terms: Tensor) -> Tensor:
    """Directional albedo of the GGX lobe ``F0 * scale + bias`` [N, 3]; lut_terms [N, 2] from :func:`sample_lut`."""
    return f0 * lut_terms[:, :1] + lut_terms[:, 1:2]


def split_sum_specular(light: Tensor, f0: Tensor, lut: Tensor, n_dot_v: Tensor, roughness: Tensor) -> Tensor:
    """``light * (F0 * scale + bias)``: light, f0 [N, 3], n_dot_v, roughness [N, 1], lut [R, C, 2]."""
    return light * specular_albedo(f0, sample_lut(lut, n_dot_v[:, 0], roughness[:, 0]))
