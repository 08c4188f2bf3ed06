"""Render one view of sparse voxels from its binned entry list (:mod:`lumisurf.voxels.binning`).

``rasterize_tiles_torch`` is the differentiable plain-torch twin: per tile, a dense ``[pixels, entries]``
layout of the tile's sorted list, with the entries that do not cover a pixel (outside their screen box, or
serving another ray octant) given zero opacity. It is exact (no early termination) and is the fallback and
test reference of the fast kernels; :func:`lumisurf.voxels.raster_torch.rasterize_reference` (every ray
against every voxel) checks it in turn.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.renderers.volume import accumulate, composite_background, render_weights
from lumisurf.voxels.binned import TILE, Binned
from lumisurf.voxels.octree import direction_octant
from lumisurf.voxels.raster_torch import (
    GeometryMode,
    density_alpha,
    distortion,
    ray_box,
    sdf_alpha,
    tap_priority,
    voxel_normals,
)
from lumisurf.voxels.soft import SoftRaster, footprint_gain, margin, softmax_weights

OUTPUTS = ("rgb", "opacity", "depth", "normal", "distortion")
STOP_T = 1e-4  # the fast kernels stop a pixel once its transmittance is below this


def rasterize_tiles(
    binned: Binned,
    origins: Tensor,
    dirs: Tensor,
    lo: Tensor,
    size: Tensor,
    corners: Tensor,
    rgb: Tensor,
    background: Tensor,
    width: int,
    height: int,
    mode: GeometryMode = "density",
    inv_s: Tensor | float = 64.0,
    n_samples: int = 1,
    backend: str = "auto",
    stop_t: float = STOP_T,
    priority: Tensor | None = None,
    soft: SoftRaster | None = None,
) -> dict[str, Tensor]:
    """Render one view: the Warp kernels (``backend`` auto/warp; float32, early stop at ``stop_t``) or the
    torch twin (``torch``, whenever Warp cannot run, and for the ``soft`` variants). Arguments and outputs as
    :func:`rasterize_tiles_torch`; the Warp path adds ``segments`` ``[P]``, the ray-voxel segments each pixel
    evaluated."""
    from lumisurf.voxels import raster_warp  # lazy: Warp (seconds to import) loads only for its path

    reason = raster_warp.unavailable([origins, dirs, lo, size, corners, rgb])
    if soft is not None and soft.active:
        reason = reason or "the soft variants (voxels/soft.py) have no Warp kernels"
        backend = "torch" if backend == "auto" else backend
    if backend == "torch" or (reason is not None and backend == "auto"):
        return rasterize_tiles_torch(
            binned,
            origins,
            dirs,
            lo,
            size,
            corners,
            rgb,
            background,
            width,
            height,
            mode,
            inv_s,
            n_samples,
            priority,
            soft,
        )
    if reason is not None:
        raise RuntimeError(f"the Warp voxel rasterizer cannot run here: {reason}")
    i32 = lambda t: t.to(torch.int32).contiguous()  # noqa: E731
    geo = {
        "tile_start": i32(binned.tile_start),
        "voxel": i32(binned.voxel),
        "octant": i32(binned.octant),
        "bbox": i32(binned.bbox),
        "lo": lo,
        "size": size.contiguous(),
        "ray_o": origins,
        "ray_d": dirs,
        "ray_oct": i32(direction_octant(dirs)),
        "width": width,
        "height": height,
        "tiles_x": binned.tiles_x,
        "n_tiles": binned.tiles_x * binned.tiles_y,
        "mode": 0 if mode == "density" else 1,
        "n_samples": int(n_samples),
        "stop_t": float(stop_t),
    }
    bg = background.to(lo.dtype)
    rgb_out, opacity, depth, normal, max_w, n_seg, median, dist = raster_warp.rasterize_tiles_warp(
        geo, corners, rgb, voxel_normals(corners, mode), inv_s, bg, priority
    )
    return {
        "rgb": rgb_out,
        "opacity": opacity,
        "depth": depth,
        "normal": normal,
        "max_weight": max_w,
        "segments": n_seg,
        "median_depth": median,
        "distortion": dist,
    }


def _fringe(o, d, lo, size, grow, a, b, hit, cover, soft: SoftRaster):
    """Segments of the rays ``[n]`` that miss the boxes ``[E]`` but meet them grown by ``grow`` ``[E]``, merged
    into ``a``, ``b``, ``hit`` ``[n, E]``, and their opacity gains (1 for true hits)."""
    a2, b2 = ray_box(o, d, lo - grow[:, None], lo + (size + grow)[:, None])
    fringe = cover & ~hit & (b2 > a2)
    a, b = torch.where(fringe, a2, a), torch.where(fringe, b2, b)
    n = o.shape[0]
    gain = footprint_gain(o, d, a, b, lo.expand(n, -1, -1), size.expand(n, -1), soft)
    return a, b, hit | fringe, torch.where(fringe, gain, torch.ones_like(gain))


def median_depth(weights: Tensor, mid: Tensor) -> Tensor:
    """``[R, 1]``: ``mid`` ``[R, E]`` of the first entry after which the transmittance is below one half (0 where
    it never is); ``weights`` ``[R, E]`` front to back."""
    crossed = (1.0 - weights.cumsum(-1)) < 0.5  # [R, E]
    first = crossed.to(torch.int8).argmax(-1, keepdim=True)
    return torch.where(crossed.any(-1, keepdim=True), mid.detach().gather(-1, first), torch.zeros_like(mid[:, :1]))


def tile_pixels(t: int, binned: Binned, width: int, height: int, device) -> tuple[Tensor, Tensor]:
    """Columns and rows ``[n]`` of the pixels of tile ``t`` (row-major; clipped at the image border)."""
    ty, tx = divmod(t, binned.tiles_x)
    xs = torch.arange(tx * TILE, min((tx + 1) * TILE, width), device=device)
    ys = torch.arange(ty * TILE, min((ty + 1) * TILE, height), device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return x.reshape(-1), y.reshape(-1)


def rasterize_tiles_torch(
    binned: Binned,
    origins: Tensor,
    dirs: Tensor,
    lo: Tensor,
    size: Tensor,
    corners: Tensor,
    rgb: Tensor,
    background: Tensor,
    width: int,
    height: int,
    mode: GeometryMode = "density",
    inv_s: Tensor | float = 64.0,
    n_samples: int = 1,
    priority: Tensor | None = None,
    soft: SoftRaster | None = None,
) -> dict[str, Tensor]:
    """Render all ``width x height`` pixels (row-major rays ``origins``, unit ``dirs`` ``[P, 3]``).

    Voxel data as in :func:`lumisurf.voxels.raster_torch.rasterize_reference` (corners ``[N, 8]``, rgb
    ``[N, 3]`` as seen from this view). Returns ``rgb`` ``[P, 3]``, ``opacity`` ``[P, 1]``, ``depth``
    ``[P, 1]`` (unnormalised), ``normal`` ``[P, 3]`` (weighted, outward), ``median_depth`` ``[P, 1]`` (the middle
    of the segment where the transmittance falls below one half; 0 where it never does; no gradient),
    ``distortion`` ``[P, 1]`` (:func:`lumisurf.voxels.raster_torch.distortion`) and ``max_weight`` ``[N]``.
    ``soft``: the variants of :mod:`lumisurf.voxels.soft` (``binned`` must then come from boxes grown by
    :func:`lumisurf.voxels.soft.margin`).
    """
    n_pix = width * height
    out = {k: origins.new_zeros(n_pix, 3 if k in ("rgb", "normal") else 1) for k in OUTPUTS}
    out["rgb"] = out["rgb"] + background  # pixels of empty tiles see the background
    max_w = origins.new_zeros(lo.shape[0])
    ray_oct = direction_octant(dirs)
    normals = voxel_normals(corners, mode)
    parts: dict[str, list] = {k: [] for k in OUTPUTS + ("median_depth",)}
    grow = margin(lo, size, origins[0], soft) if soft is not None and soft.footprint else None
    pix_all = []
    for t in range(binned.tiles_x * binned.tiles_y):
        s, e = int(binned.tile_start[t]), int(binned.tile_start[t + 1])
        if s == e:
            continue
        x, y = tile_pixels(t, binned, width, height, origins.device)
        pix = y * width + x  # [n]
        vox, box = binned.voxel[s:e], binned.bbox[binned.voxel[s:e]]  # [E], [E, 4]
        cover = (
            (x[:, None] >= box[:, 0])
            & (x[:, None] < box[:, 1])
            & (y[:, None] >= box[:, 2])
            & (y[:, None] < box[:, 3])
            & (ray_oct[pix][:, None] == binned.octant[s:e])
        )  # [n, E]
        o, d = origins[pix], dirs[pix]
        a, b = ray_box(o, d, lo[vox], lo[vox] + size[vox, None])
        hit = cover & (b > a)
        n = pix.numel()
        gain = None
        if soft is not None and soft.footprint:  # fringe segments on the grown boxes, scaled by the Gaussian
            a, b, hit, gain = _fringe(o, d, lo[vox], size[vox], grow[vox], a, b, hit, cover, soft)
        geo = (corners[vox].expand(n, -1, -1), lo[vox].expand(n, -1, -1), size[vox].expand(n, -1), o, d, a, b)
        alpha = density_alpha(*geo, n_samples) if mode == "density" else sdf_alpha(*geo, inv_s)
        alpha = alpha if gain is None else alpha * gain
        alpha = tap_priority(torch.where(hit, alpha, torch.zeros_like(alpha)), vox, priority)
        if soft is not None and soft.temperature > 0:
            w = softmax_weights(alpha, 0.5 * (a + b), hit, soft.temperature)
        else:
            w = render_weights(alpha)  # [n, E]
        opacity = accumulate(w)
        bg = background if background.dim() == 1 else background[pix]
        parts["opacity"].append(opacity)
        parts["rgb"].append(composite_background(accumulate(w, rgb[vox].expand(n, -1, -1)), opacity, bg))
        parts["depth"].append(accumulate(w, (0.5 * (a + b))[..., None]))
        parts["normal"].append(accumulate(w, normals[vox].expand(n, -1, -1)))
        parts["median_depth"].append(median_depth(w.detach(), 0.5 * (a + b)))
        mid, seg = torch.where(hit, 0.5 * (a + b), 0.0), torch.where(hit, b - a, 0.0)  # zero off the ray
        parts["distortion"].append(distortion(w, mid, seg))
        max_w = max_w.scatter_reduce(0, vox, w.detach().amax(0), "amax")
        pix_all.append(pix)
    out["median_depth"] = origins.new_zeros(n_pix, 1)
    if pix_all:
        idx = torch.cat(pix_all)
        for k in parts:
            out[k] = out[k].index_copy(0, idx, torch.cat(parts[k]))
    out["max_weight"] = max_w
    return out
