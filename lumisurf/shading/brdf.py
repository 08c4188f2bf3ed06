"""Microfacet BRDF for Monte-Carlo shading (Stage II): Lambert diffuse + GGX specular, with samplers.

Conventions: all directions are unit world vectors, broadcastable [..., 3]; ``v`` points from the
surface to the camera, ``l`` from the surface to the light, ``n`` is the shading normal. GGX
alpha = roughness^2 (Mitsuba / Disney), height-correlated Smith masking-shadowing, Schlick Fresnel.
Materials: albedo [..., 3] linear, metallic [..., 1], roughness [..., 1]; F0 as Mitsuba's principled
BSDF (specular = 0.5 -> 0.04 for dielectrics). pdfs are per steradian of l.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lumisurf.shading.split_sum import smith_g_height_correlated

_MIN_ALPHA = 1e-4  # roughness 0.01
_EPS = 1e-7


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """[..., 3] x [..., 3] -> [..., 1]."""
    return (a * b).sum(-1, keepdim=True)


def _normalize(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _alpha(roughness: Tensor) -> Tensor:
    return (roughness * roughness).clamp_min(_MIN_ALPHA)


def f0_from(albedo: Tensor, metallic: Tensor, specular: float = 0.5) -> Tensor:
    """Normal-incidence reflectance [..., 3]: 0.08 specular (1 - metallic) + albedo metallic."""
    return 0.08 * specular * (1 - metallic) + albedo * metallic


def ggx_d(n_dot_h: Tensor, alpha: Tensor) -> Tensor:
    """GGX / Trowbridge-Reitz normal distribution D(h) (per steradian of h; int D(h) n.h dh = 1);
    0 for n.h <= 0. n.h is clamped to 1: a unit half vector rounded to n.h = 1 + 1e-7 made the denominator
    exactly 0 at roughness 0.02 (alpha^2 ~ float32 epsilon), and inf * 0 light a NaN pixel."""
    a2 = alpha * alpha
    c2 = n_dot_h.clamp(0.0, 1.0) ** 2
    denom = (1.0 - c2) + a2 * c2  # = c2 (a2 - 1) + 1, without losing a2 to the rounding of a2 - 1
    return torch.where(n_dot_h > 0, a2 / (math.pi * denom**2), torch.zeros_like(c2))


def smith_g1(n_dot_x: Tensor, alpha: Tensor) -> Tensor:
    """Smith masking G1 for GGX: 2 n.x / (n.x + sqrt(a^2 + (1 - a^2) (n.x)^2))."""
    a2 = alpha * alpha
    return 2 * n_dot_x / (n_dot_x + torch.sqrt(a2 + (1 - a2) * n_dot_x * n_dot_x)).clamp_min(_EPS)


def fresnel_schlick(f0: Tensor, v_dot_h: Tensor) -> Tensor:
    """F0 + (1 - F0) (1 - v.h)^5."""
    return f0 + (1 - f0) * (1 - v_dot_h.clamp(0.0, 1.0)) ** 5


def eval_brdf_cos(
    n: Tensor, v: Tensor, l: Tensor, albedo: Tensor, metallic: Tensor, roughness: Tensor, specular: float = 0.5
) -> Tensor:
    """f(v, l) max(n.l, 0) [..., 3]: albedo (1 - metallic) / pi + D G F / (4 n.v n.l); 0 when n.v <= 0
    or n.l <= 0."""
    nl, nv = _dot(n, l), _dot(n, v)
    valid = ((nl > 0) & (nv > 0)).to(nl.dtype)
    nl_c, nv_c = nl.clamp_min(_EPS), nv.clamp_min(_EPS)
    h = _normalize(v + l)
    alpha = _alpha(roughness)
    d = ggx_d(_dot(n, h), alpha)
    g = smith_g_height_correlated(nv_c, nl_c, alpha)
    f = fresnel_schlick(f0_from(albedo, metallic, specular), _dot(v, h))
    spec_cos = d * g * f / (4 * nv_c)  # the n.l of the denominator cancels the cosine
    diffuse_cos = albedo * (1 - metallic) / math.pi * nl_c
    return (diffuse_cos + spec_cos) * valid


def _frame(n: Tensor) -> tuple[Tensor, Tensor]:
    """Tangent t, bitangent b [..., 3] with (t, b, n) right-handed orthonormal (Duff et al. 2017)."""
    x, y, z = n.unbind(-1)
    sign = torch.where(z >= 0, 1.0, -1.0).to(n.dtype)
    a = -1.0 / (sign + z)
    b = x * y * a
    t = torch.stack([1 + sign * x * x * a, sign * b, -sign * x], -1)
    bt = torch.stack([b, sign + y * y * a, -y], -1)
    return t, bt


def _to_world(local: Tensor, n: Tensor) -> Tensor:
    t, b = _frame(n)
    return local[..., :1] * t + local[..., 1:2] * b + local[..., 2:] * n


def _to_local(w: Tensor, n: Tensor) -> Tensor:
    t, b = _frame(n)
    return torch.cat([_dot(w, t), _dot(w, b), _dot(w, n)], -1)


def sample_ggx_reflection(n: Tensor, v: Tensor, roughness: Tensor, xi: Tensor) -> Tensor:
    """l [..., 3]: reflect v about a half vector drawn from the GGX distribution of visible normals
    (Heitz 2018) for xi [..., 2] in [0, 1)^2. l may fall below the surface (then f = 0)."""
    alpha = _alpha(roughness)
    shape = torch.broadcast_shapes(n.shape, v.shape, xi.shape[:-1] + (3,))
    n, v = n.expand(shape), v.expand(shape)
    vl = _to_local(v, n)
    vl = torch.cat([vl[..., :2], vl[..., 2:].clamp_min(_EPS)], -1)
    vh = _normalize(torch.cat([alpha * vl[..., :2], vl[..., 2:]], -1))  # stretched view direction
    lensq = (vh[..., :2] ** 2).sum(-1, keepdim=True)
    t1 = torch.where(
        lensq > 1e-14,
        torch.cat([-vh[..., 1:2], vh[..., :1], torch.zeros_like(lensq)], -1) / lensq.clamp_min(1e-14).sqrt(),
        torch.tensor([1.0, 0.0, 0.0], dtype=v.dtype, device=v.device),
    )
    t2 = torch.cross(vh, t1, dim=-1)
    r = torch.sqrt(xi[..., :1])
    phi = 2 * math.pi * xi[..., 1:2]
    p1, p2 = r * torch.cos(phi), r * torch.sin(phi)
    s = 0.5 * (1 + vh[..., 2:])
    p2 = (1 - s) * torch.sqrt((1 - p1 * p1).clamp_min(0.0)) + s * p2
    nh = p1 * t1 + p2 * t2 + torch.sqrt((1 - p1 * p1 - p2 * p2).clamp_min(0.0)) * vh
    h = _normalize(torch.cat([alpha * nh[..., :2], nh[..., 2:].clamp_min(0.0)], -1))
    ll = 2 * _dot(vl, h) * h - vl
    return _to_world(ll, n)


def pdf_ggx_reflection(n: Tensor, v: Tensor, l: Tensor, roughness: Tensor) -> Tensor:
    """[...] density per steradian of l from sample_ggx_reflection: D(h) G1(v) / (4 n.v), h = (v+l)/|v+l|
    (over the whole sphere of l; it integrates to 1 there, to G-dependent < 1 over the upper hemisphere)."""
    alpha = _alpha(roughness)
    nv = _dot(n, v).clamp_min(_EPS)
    h = _normalize(v + l)
    pdf = ggx_d(_dot(n, h), alpha) * smith_g1(nv, alpha) / (4 * nv)
    return pdf.squeeze(-1)


def sample_cosine(n: Tensor, xi: Tensor) -> Tensor:
    """l [..., 3] with density n.l / pi on the hemisphere around n (Malley's method)."""
    r = torch.sqrt(xi[..., :1])
    phi = 2 * math.pi * xi[..., 1:2]
    local = torch.cat([r * torch.cos(phi), r * torch.sin(phi), torch.sqrt((1 - r * r).clamp_min(0.0))], -1)
    shape = torch.broadcast_shapes(n.shape, local.shape)
    return _to_world(local.expand(shape), n.expand(shape))


def pdf_cosine(n: Tensor, l: Tensor) -> Tensor:
    """[...] max(n.l, 0) / pi per steradian."""
    return _dot(n, l).clamp_min(0.0).squeeze(-1) / math.pi


def mis_weight_balance(pdf_a: Tensor, pdf_b: Tensor) -> Tensor:
    """Balance heuristic pdf_a / (pdf_a + pdf_b); 0 where both are 0."""
    total = pdf_a + pdf_b
    return torch.where(
        total > 0, pdf_a / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(total)
    )
