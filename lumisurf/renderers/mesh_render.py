"""Physically based rendering of the Stage II mesh: camera rays traced against the mesh, Monte-Carlo
shading under an environment map with visibility (``shading/monte_carlo.py``), and material maps.

Images are linear radiance [H, W, 3] with coverage alpha [H, W] (fraction of a pixel's jittered rays
that hit the mesh); the caller encodes to sRGB and composites over a background.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras
from lumisurf.renderers.mesh_tracer import MeshTracer
from lumisurf.shading.lighting import Lighting
from lumisurf.shading.monte_carlo import Strategy, shade


def jittered_pixels(h: int, w: int, spp: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Pixel positions [spp, h*w] (col, row continuous): stratified on a k x k grid when spp = k^2."""
    k = int(round(spp**0.5))
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w).reshape(-1)
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w).reshape(-1)
    px, py = [], []
    for s in range(spp):
        jx, jy = torch.rand(2, h * w, generator=generator)
        if k * k == spp:
            jx, jy = ((s % k) + jx) / k, ((s // k) + jy) / k
        px.append(cols + jx)
        py.append(rows + jy)
    return torch.stack(px), torch.stack(py)


def render_strategy(env_sampler=None, stratified: bool = False) -> Strategy:
    """The renders' light sampling: 40 % GGX, 20 % cosine, 40 % the map's luminance (when it has a sampler)."""
    return Strategy(ggx=0.4, cosine=0.2, env=0.4 if env_sampler is not None else 0.0, stratified=stratified)


@torch.no_grad()
def render_mesh_view(
    tracer: MeshTracer,
    field,
    lighting: Lighting,
    cameras: Cameras,
    cam: int,
    spp: int = 4,
    light_samples: int = 128,
    strategy: Strategy | None = None,
    env_sampler=None,
    generator: torch.Generator | None = None,
    chunk: int = 2048,
) -> tuple[Tensor, Tensor]:
    """Linear rgb [H, W, 3] and coverage [H, W] of camera ``cam`` (pixel box filter, ``spp`` rays a pixel)."""
    gen = generator or torch.Generator().manual_seed(cam)
    strategy = strategy or render_strategy(env_sampler)
    h, w = int(cameras.height), int(cameras.width)
    px, py = jittered_pixels(h, w, spp, gen)
    rgb = torch.zeros(h * w, 3)
    hit_count = torch.zeros(h * w)
    idx_cam = torch.full((h * w,), cam, dtype=torch.long)
    dev = cameras.device
    for s in range(spp):
        o, d = cameras.rays(idx_cam.to(dev), px[s].to(dev), py[s].to(dev))
        hits = tracer.intersect(o, d)
        hit_idx = hits.hit.nonzero()[:, 0]
        hit_count[hit_idx.cpu()] += 1
        for start in range(0, hit_idx.numel(), chunk):
            sel = hit_idx[start : start + chunk]
            x, n = hits.points[sel], hits.normals[sel]
            mat = field(x)
            lin = shade(
                x,
                n,
                -d[sel],
                mat["albedo"],
                mat["metallic"],
                mat["roughness"],
                lighting.radiance,
                tracer.occluded,
                light_samples,
                strategy,
                gen,
                env_sampler,
            )
            rgb[sel.cpu()] += lin.float().cpu()
    return (rgb / spp).reshape(h, w, 3), (hit_count / spp).reshape(h, w)


@torch.no_grad()
def material_maps(tracer: MeshTracer, field, cameras: Cameras, cam: int) -> dict[str, Tensor]:
    """Per-pixel-centre material maps of camera ``cam``: albedo [H, W, 3] (linear), roughness, metallic
    [H, W] and the hit mask [H, W] (bool); 0 where the ray misses."""
    o, d, h, w = cameras.pixel_rays(cam)
    hits = tracer.intersect(o, d)
    out = {"albedo": torch.zeros(h * w, 3), "roughness": torch.zeros(h * w), "metallic": torch.zeros(h * w)}
    idx = hits.hit.nonzero()[:, 0]
    if idx.numel():
        mat = field(hits.points[idx])
        out["albedo"][idx.cpu()] = mat["albedo"].float().cpu()
        out["roughness"][idx.cpu()] = mat["roughness"][:, 0].float().cpu()
        out["metallic"][idx.cpu()] = mat["metallic"][:, 0].float().cpu()
    maps = {k: v.reshape(h, w, -1).squeeze(-1) for k, v in out.items()}
    maps["mask"] = hits.hit.cpu().reshape(h, w)
    return maps
