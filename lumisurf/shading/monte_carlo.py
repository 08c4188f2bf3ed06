"""Monte-Carlo shading of surface points under distant light, with visibility (Stage II and relighting).

Outgoing radiance ``Lo(x, wo) = integral f(wo, l) L(x, l) (n . l) dl`` is estimated with S directions
per point drawn from a one-sample mixture of strategies (GGX lobe, cosine lobe and, when given, the
environment map's luminance): ``Lo ~ mean_s f cos L / p_mix(l_s)``, unbiased whatever the mixture
weights. Directions and pdfs are computed from detached material values (no gradient through the
sampling); gradients reach the materials through ``f`` and the lighting through ``L``.
All directions are unit vectors in the normalised world frame; ``wo`` points from the surface to the camera.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lumisurf.shading.brdf import eval_brdf_cos, pdf_cosine, pdf_ggx_reflection, sample_cosine, sample_ggx_reflection

# radiance(points [M, 3], dirs [M, 3], occluded [M] bool) -> [M, 3]
RadianceFn = Callable[[Tensor, Tensor, Tensor], Tensor]
# occluded(origins [M, 3], dirs [M, 3]) -> [M] bool
VisibilityFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Strategy:
    """Sampling mixture: shares of GGX / cosine / environment directions (they need not sum to 1);
    ``stratified``: each strategy's directions at a point come from a Latin hypercube of their random numbers
    (still unbiased, less noise) instead of independent ones."""

    ggx: float = 0.5
    cosine: float = 0.5
    env: float = 0.0
    stratified: bool = False

    def counts(self, n: int) -> tuple[int, int, int]:
        total = self.ggx + self.cosine + self.env
        n_g = int(round(n * self.ggx / total))
        n_e = int(round(n * self.env / total))
        return n_g, n - n_g - n_e, n_e


def latin_hypercube(rows: int, n: int, generator: torch.Generator | None) -> Tensor:
    """[rows, n, 2] points in [0, 1)^2 (CPU, float32): in each row, one point in every one of n columns and n
    rows of the n x n grid (a random pairing per row), uniform inside its cell. Each point is uniform on the
    square, so an estimator stays unbiased; together they cover it evenly."""
    u = torch.rand(rows, n, 3, generator=generator, device="cpu")
    pairing = torch.argsort(u[..., 2], dim=1).to(u.dtype)  # [rows, n] a random permutation per row
    k = torch.arange(n, dtype=u.dtype)
    return torch.stack([(pairing + u[..., 0]) / n, (k + u[..., 1]) / n], -1)


def _unit_square(rows: int, counts: tuple[int, ...], stratified: bool, generator) -> Tensor:
    """[rows, sum(counts), 2] random numbers: one block per strategy, a Latin hypercube each when stratified."""
    if not stratified:
        return torch.rand(rows, sum(counts), 2, generator=generator, device="cpu")
    return torch.cat([latin_hypercube(rows, c, generator) for c in counts], 1)


def sample_directions(
    n: Tensor,
    wo: Tensor,
    roughness: Tensor,
    n_samples: int,
    strategy: Strategy,
    generator: torch.Generator | None,
    env_sampler=None,
) -> tuple[Tensor, Tensor]:
    """Directions [N, S, 3] and their mixture pdf [N, S] (per steradian). n, wo [N, 3]; roughness [N, 1]."""
    n_g, n_c, n_e = strategy.counts(n_samples)
    N, dev, dt = n.shape[0], n.device, n.dtype
    xi = _unit_square(N, (n_g, n_c), strategy.stratified, generator).to(device=dev, dtype=dt)
    nn_, wo_, r_ = n[:, None], wo[:, None], roughness[:, None].detach()
    parts = [
        sample_ggx_reflection(nn_.expand(N, n_g, 3), wo_.expand(N, n_g, 3), r_.expand(N, n_g, 1), xi[:, :n_g]),
        sample_cosine(nn_.expand(N, n_c, 3), xi[:, n_g:]),
    ]
    if n_e > 0:
        u_env = None  # stratified: a Latin hypercube over (which texel, where in u), cos theta at random
        if strategy.stratified:
            u_env = torch.cat([latin_hypercube(N, n_e, generator), torch.rand(N, n_e, 1, generator=generator)], -1)
            u_env = u_env.reshape(N * n_e, 3)
        d_env, _ = env_sampler.sample(N * n_e, generator, u_env)
        parts.append(d_env.to(device=dev, dtype=dt).reshape(N, n_e, 3))
    dirs = torch.cat(parts, 1)  # [N, S, 3]
    total = strategy.ggx + strategy.cosine + strategy.env
    S = dirs.shape[1]
    nS, woS, rS = nn_.expand(N, S, 3), wo_.expand(N, S, 3), r_.expand(N, S, 1)
    pdf = (strategy.ggx / total) * pdf_ggx_reflection(nS, woS, dirs, rS)
    pdf = pdf + (strategy.cosine / total) * pdf_cosine(nS, dirs)
    if n_e > 0:
        pdf = pdf + (strategy.env / total) * env_sampler.pdf(dirs.reshape(-1, 3)).to(pdf).reshape(N, S)
    return dirs, pdf


def face_forward(n: Tensor, wo: Tensor, min_cos: float = 0.01) -> Tensor:
    """Bend interpolated normals [N, 3] that face away from the viewer (silhouettes) to n . wo = min_cos."""
    c = (n * wo).sum(-1, keepdim=True)
    bent = torch.nn.functional.normalize(n + (min_cos - c) * wo, dim=-1)
    return torch.where(c < min_cos, bent, n)


def shade(
    points: Tensor,
    normals: Tensor,
    wo: Tensor,
    albedo: Tensor,
    metallic: Tensor,
    roughness: Tensor,
    radiance: RadianceFn,
    occluded: VisibilityFn | None,
    n_samples: int,
    strategy: Strategy,
    generator: torch.Generator | None = None,
    env_sampler=None,
    offset: float = 1e-3,
) -> Tensor:
    """Linear outgoing radiance [N, 3] of surface points [N, 3] with unit normals facing the camera."""
    N = points.shape[0]
    normals = face_forward(normals, wo)
    dirs, pdf = sample_directions(normals, wo, roughness, n_samples, strategy, generator, env_sampler)
    finite = torch.isfinite(dirs).all(-1) & torch.isfinite(pdf)  # degenerate samples (e.g. wo below n)
    dirs = torch.where(finite[..., None], dirs, normals[:, None].expand_as(dirs))
    S = dirs.shape[1]
    cos = (dirs * normals[:, None]).sum(-1)  # [N, S]
    valid = finite & (cos > 1e-4) & (pdf > 1e-8)
    origins = (points + offset * normals)[:, None].expand(N, S, 3)
    flat_dirs = dirs.reshape(-1, 3)
    blocked = (
        occluded(origins.reshape(-1, 3), flat_dirs)
        if occluded is not None
        else torch.zeros(N * S, dtype=torch.bool, device=points.device)
    )
    light = radiance(points[:, None].expand(N, S, 3).reshape(-1, 3), flat_dirs, blocked).reshape(N, S, 3)
    f_cos = eval_brdf_cos(
        normals[:, None], wo[:, None], dirs, albedo[:, None], metallic[:, None], roughness[:, None]
    )  # [N, S, 3]
    w = torch.where(valid, 1.0 / pdf.clamp_min(1e-8), torch.zeros_like(pdf))
    return (f_cos * light * w[..., None]).mean(1)
