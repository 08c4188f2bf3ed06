"""Lat-long environment maps: the dataset's direction <-> texel convention, look-ups, a learnable map,
importance sampling and area down-sampling.

Convention (shared/data/README.md, "Environment maps"): world +z up; for a unit direction d = (x, y, z)
pointing towards the environment, u = (atan2(x, y) / 2 pi) mod 1 (column = u * W) and
v = acos(z) / pi (row = v * H, row 0 = top = +z). Texel (i, j) covers u in [j, j+1) / W and
v in [i, i+1) / H; its centre is at ((j + 0.5) / W, (i + 0.5) / H). Radiance is linear RGB.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

_LUMA = (0.2126, 0.7152, 0.0722)  # linear Rec.709 luminance weights


def dir_to_uv(d: Tensor) -> Tensor:
    """[..., 3] directions (any length) -> [..., 2] (u, v) in [0, 1)."""
    x, y, z = d.unbind(-1)
    z = z / d.norm(dim=-1).clamp_min(1e-30)
    u = torch.remainder(torch.atan2(x, y) / (2 * math.pi), 1.0)
    v = torch.acos(z.clamp(-1.0, 1.0)) / math.pi
    return torch.stack([u, v], -1)


def uv_to_dir(uv: Tensor) -> Tensor:
    """[..., 2] (u, v) -> [..., 3] unit directions."""
    phi, theta = 2 * math.pi * uv[..., 0], math.pi * uv[..., 1]
    s = torch.sin(theta)
    return torch.stack([s * torch.sin(phi), s * torch.cos(phi), torch.cos(theta)], -1)


def row_solid_angles(h: int, w: int, dtype=torch.float64, device=None) -> Tensor:
    """[h] exact solid angle of one texel in each row: (2 pi / w) (cos theta_top - cos theta_bottom)."""
    edges = torch.cos(torch.linspace(0.0, math.pi, h + 1, dtype=torch.float64))
    return ((edges[:-1] - edges[1:]) * (2 * math.pi / w)).to(dtype=dtype, device=device)


def latlong_directions(h: int, w: int, dtype=torch.float32, device=None) -> tuple[Tensor, Tensor]:
    """Texel-centre directions [h, w, 3] and exact texel solid angles [h, w] (sum 4 pi, steradians)."""
    v = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    u = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    uv = torch.stack(torch.meshgrid(u, v, indexing="xy"), -1)  # [h, w, 2]
    dirs = uv_to_dir(uv).to(dtype=dtype, device=device)
    omega = row_solid_angles(h, w, dtype, device)[:, None].expand(h, w).contiguous()
    return dirs, omega


def sample_latlong(img: Tensor, d: Tensor) -> Tensor:
    """Bilinear radiance [N, 3] of img [H, W, C] in directions d [N, 3]; wraps in u, clamps in v.

    Texel centres as in the module docstring; differentiable w.r.t. img."""
    h, w = img.shape[0], img.shape[1]
    uv = dir_to_uv(d.to(img.dtype))
    x = uv[..., 0] * w - 0.5
    y = (uv[..., 1] * h - 0.5).clamp(0.0, h - 1.0)
    x0, y0 = torch.floor(x), torch.floor(y).clamp(max=max(h - 2, 0))
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0 = torch.remainder(x0.long(), w)
    x1 = torch.remainder(x0 + 1, w)
    y0 = y0.long()
    y1 = (y0 + 1).clamp(max=h - 1)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def luminance(rgb: Tensor) -> Tensor:
    """[..., 3] linear RGB -> [...] Rec.709 luminance."""
    return (rgb * rgb.new_tensor(_LUMA)).sum(-1)


def downsample_envmap(img: Tensor | np.ndarray, h: int, w: int) -> Tensor | np.ndarray:
    """Area average of a lat-long map [H, W, C] to [h, w, C], rows weighted by solid angle so the
    integral over the sphere is kept; works for any sizes (partial texel overlaps are weighted)."""
    as_numpy = isinstance(img, np.ndarray)
    x = torch.as_tensor(img)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    big_h, big_w = x.shape[0], x.shape[1]
    rows = _overlap(big_h, h) * row_solid_angles(big_h, 1)[None]  # [h, H]
    rows = rows / rows.sum(1, keepdim=True)
    cols = _overlap(big_w, w)
    cols = cols / cols.sum(1, keepdim=True)  # [w, W]
    out = torch.einsum(
        "ik,kl...,jl->ij...", rows.to(dtype=dtype, device=x.device), x.to(dtype), cols.to(dtype=dtype, device=x.device)
    )
    return out.numpy() if as_numpy else out


def _overlap(n_in: int, n_out: int) -> Tensor:
    """[n_out, n_in] length of overlap of output cell i with input cell k on [0, 1]."""
    a = torch.arange(n_in + 1, dtype=torch.float64) / n_in
    b = torch.arange(n_out + 1, dtype=torch.float64) / n_out
    lo = torch.maximum(b[:-1, None], a[None, :-1])
    hi = torch.minimum(b[1:, None], a[None, 1:])
    return (hi - lo).clamp_min(0.0)


def _upsample_wrapped(x: Tensor, h: int, w: int) -> Tensor:
    """Bilinear up-sampling of a lat-long map [h0, w0, C] to [h, w, C], wrapping in u (columns)."""
    w0 = x.shape[1]
    padded = torch.cat([x[:, -1:], x, x[:, :1]], 1).permute(2, 0, 1)[None]  # one wrapped column each side
    scale = w / w0
    up = nn.functional.interpolate(padded, size=(h, int(round((w0 + 2) * scale))), mode="bilinear", align_corners=False)
    off = int(round(scale))
    return up[0, :, :, off : off + w].permute(1, 2, 0)


class EnvironmentMap(nn.Module):
    """Learnable lat-long environment light; forward(d) [N, 3] > 0.

    Log radiance [H, W, 3] = ``log_radiance`` (the full-resolution level) + the bilinear up-sampling of
    ``levels - 1`` coarser levels (H/2^k x W/2^k, k = 1..levels-1, zero at start). A coarse parameter moves a
    whole region at once, so under noisy Monte-Carlo gradients the coarse levels learn first (coarse to fine)."""

    def __init__(self, height: int = 32, width: int = 64, init: float = 0.5, levels: int = 1):
        super().__init__()
        self.log_radiance = nn.Parameter(torch.full((height, width, 3), math.log(init)))
        sizes = [(height >> k, width >> k) for k in range(1, levels)]
        self.coarse = nn.ParameterList([nn.Parameter(torch.zeros(h, w, 3)) for h, w in sizes if h >= 1 and w >= 2])

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def log_image(self) -> Tensor:
        """[H, W, 3] log radiance."""
        h, w = self.log_radiance.shape[:2]
        out = self.log_radiance
        for level in self.coarse:
            out = out + _upsample_wrapped(level, h, w)
        return out

    @classmethod
    def from_image(cls, img: Tensor | np.ndarray, min_value: float = 1e-6) -> EnvironmentMap:
        """A map initialised to img [H, W, 3] (linear radiance, clamped at min_value)."""
        x = torch.as_tensor(np.asarray(img) if not isinstance(img, Tensor) else img).float()
        env = cls(x.shape[0], x.shape[1])
        with torch.no_grad():
            env.log_radiance.copy_(torch.log(x.detach().clamp_min(min_value)))
        return env

    def image(self) -> Tensor:
        """[H, W, 3] radiance."""
        return torch.exp(self.log_image())

    @torch.no_grad()
    def set_image(self, img: Tensor, min_value: float = 1e-6) -> None:
        """Make the map equal to img [H, W, 3] (linear radiance): the full level holds it, coarse levels 0."""
        self.log_radiance.copy_(torch.log(img.detach().to(self.log_radiance).clamp_min(min_value)))
        for level in self.coarse:
            level.zero_()

    def forward(self, d: Tensor) -> Tensor:
        """Radiance [N, 3] arriving from world directions d [N, 3] (bilinear in radiance)."""
        return sample_latlong(self.image(), d)


class EnvImportanceSampler:
    """Samples directions with probability proportional to luminance x texel solid angle
    (i.e. luminance * sin(theta) per unit of uv area): piecewise constant per steradian within
    each texel. An all-black map falls back to uniform sphere sampling."""

    def __init__(self, img: Tensor | np.ndarray):
        x = torch.as_tensor(np.asarray(img) if not isinstance(img, Tensor) else img).detach()
        self.h, self.w = x.shape[0], x.shape[1]
        self.dtype = x.dtype if x.is_floating_point() else torch.float32
        self.device = x.device
        omega = row_solid_angles(self.h, self.w, torch.float64, x.device)[:, None]  # [H, 1]
        weight = luminance(x.to(torch.float64)).clamp_min(0.0) * omega  # [H, W]
        if not bool(weight.sum() > 0):
            weight = omega.expand(self.h, self.w)
        self.prob = (weight / weight.sum()).reshape(-1)  # [H*W] texel probabilities
        self.cdf = torch.cumsum(self.prob, 0)
        self.density = self.prob.reshape(self.h, self.w) / omega  # [H, W] pdf per steradian

    def sample(
        self, n: int, generator: torch.Generator | None = None, uniforms: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """n directions [n, 3] and their pdf [n] (per steradian); the generator may live on any device.
        ``uniforms`` [n, 3] in [0, 1) replaces the random numbers (texel by the luminance CDF, u, cos theta)."""
        if uniforms is None:
            gen_device = generator.device if generator is not None else self.device
            uniforms = torch.rand(n, 3, generator=generator, dtype=torch.float64, device=gen_device)
        r = uniforms.to(device=self.device, dtype=torch.float64)
        idx = torch.searchsorted(self.cdf, (r[:, 0] * self.cdf[-1]).contiguous(), right=True)
        idx = idx.clamp(max=self.h * self.w - 1)
        row, col = idx // self.w, idx % self.w
        # uniform in solid angle inside the texel: u uniform, cos(theta) uniform between the row edges
        u = (col.to(torch.float64) + r[:, 1]) / self.w
        c0 = torch.cos(row.to(torch.float64) * math.pi / self.h)
        c1 = torch.cos((row.to(torch.float64) + 1) * math.pi / self.h)
        z = c0 + (c1 - c0) * r[:, 2]
        s = torch.sqrt((1 - z * z).clamp_min(0.0))
        phi = 2 * math.pi * u
        dirs = torch.stack([s * torch.sin(phi), s * torch.cos(phi), z], -1)
        return dirs.to(self.dtype), self.density[row, col].to(self.dtype)

    def pdf(self, d: Tensor) -> Tensor:
        """pdf [N] (per steradian) of sampling directions d [N, 3]."""
        uv = dir_to_uv(d.to(torch.float64).to(self.device))
        col = (uv[..., 0] * self.w).long().clamp(0, self.w - 1)
        row = (uv[..., 1] * self.h).long().clamp(0, self.h - 1)
        return self.density[row, col].to(dtype=d.dtype, device=d.device)
