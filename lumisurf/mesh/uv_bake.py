"""UV unwrapping (xatlas) and texture baking by rasterising UV triangles on the CPU.

Conventions: an atlas is ``(vmapping, indices, uv)`` as xatlas returns it; ``uv`` is in [0, 1] with
``v`` pointing DOWN the image (row = v * height), i.e. image convention. Writers that need the OBJ /
trimesh convention (v up) use ``1 - v``. Texel (row, col) has its centre at pixel (col + 0.5, row + 0.5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xatlas
from tqdm.auto import tqdm

from lumisurf.errors import LumisurfError

MaterialFn = Callable[[np.ndarray], dict[str, np.ndarray]]
BAKED_KEYS = ("albedo", "roughness", "metallic")


@dataclass(frozen=True)
class UVAtlas:
    """A UV-split copy of a mesh: new vertex ``i`` is original vertex ``vmapping[i]``."""

    vmapping: np.ndarray  # [V'] int64, index into the original vertices
    faces: np.ndarray  # [F, 3] int64, indices into the new vertices (same face order as input)
    uv: np.ndarray  # [V', 2] float64 in [0, 1], image convention (v down)


@dataclass(frozen=True)
class TexelSamples:
    """Texels covered by the atlas: flat texel index, owning face and clamped barycentrics."""

    texel: np.ndarray  # [M] int64, row * width + col
    face: np.ndarray  # [M] int64
    bary: np.ndarray  # [M, 3] float64, >= 0, rows sum to 1


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB transfer function on linear values (clipped to [0, 1])."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 8-bit by rounding (values are clipped first)."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def unwrap(vertices: np.ndarray, faces: np.ndarray, texture_size: int = 1024, padding: int = 2) -> UVAtlas:
    """Chart and pack the mesh with xatlas for a ``texture_size``^2 texture (``padding`` texels
    between charts). Falls back to xatlas's own atlas size if packing needs several atlases."""
    pos = np.ascontiguousarray(vertices, dtype=np.float32)
    idx = np.ascontiguousarray(faces, dtype=np.uint32)
    for resolution in (texture_size, 0):
        atlas = xatlas.Atlas()
        atlas.add_mesh(pos, idx)
        pack = xatlas.PackOptions()
        pack.resolution, pack.padding = resolution, padding
        atlas.generate(pack_options=pack)
        if atlas.atlas_count == 1:
            vmapping, new_faces, uv = atlas[0]
            return UVAtlas(vmapping.astype(np.int64), new_faces.astype(np.int64), uv.astype(np.float64))
    raise LumisurfError(f"xatlas produced {atlas.atlas_count} atlases; cannot bake one texture")


def _triangle_geometry(p: np.ndarray):
    """Doubled signed area [F] and opposite-edge lengths [F, 3] of pixel-space triangles [F, 3, 2]."""
    e = p[:, [2, 0, 1]] - p[:, [1, 2, 0]]  # edge opposite vertex i: p[i+2] - p[i+1]
    area2 = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (
        p[:, 2, 0] - p[:, 0, 0]
    )
    return area2, np.linalg.norm(e, axis=-1)


def _candidates(p, area2, edge_len, x0, y0, s, width, height, margin):
    """Texels of the s x s boxes at (x0, y0) near triangles p [B, 3, 2]: (texel, local idx, score, bary)."""
    off = np.arange(s)
    cx = x0[:, None, None] + off[None, None, :]  # [B, 1, s]
    cy = y0[:, None, None] + off[None, :, None]  # [B, s, 1]
    cx, cy = np.broadcast_arrays(cx, cy)
    qx, qy = cx.reshape(len(p), -1) + 0.5, cy.reshape(len(p), -1) + 0.5  # [B, s*s] texel centres
    lam = []
    for i in range(3):  # barycentric of vertex i: area(q, p[i+1], p[i+2]) / area
        a, b = p[:, (i + 1) % 3, None], p[:, (i + 2) % 3, None]
        cross = (a[..., 0] - qx) * (b[..., 1] - qy) - (a[..., 1] - qy) * (b[..., 0] - qx)
        lam.append(cross / area2[:, None])
    lam = np.stack(lam, axis=-1)  # [B, s*s, 3]
    # signed distance (pixels) to the edge opposite each vertex; min over edges ~ distance to triangle
    score = (lam * (np.abs(area2)[:, None, None] / edge_len[:, None, :])).min(axis=-1)
    keep = (score >= -margin) & (qx < width) & (qy < height)
    b_idx, k_idx = np.nonzero(keep)
    texel = cy.reshape(len(p), -1)[b_idx, k_idx] * width + cx.reshape(len(p), -1)[b_idx, k_idx]
    return texel.astype(np.int64), b_idx, score[b_idx, k_idx], lam[b_idx, k_idx]


def rasterize_uv(
    atlas: UVAtlas, width: int, height: int, margin: float = 0.75, max_batch: int = 1 << 21
) -> TexelSamples:
    """Texels whose centre lies within ``margin`` pixels of a UV triangle (conservative coverage,
    so bilinear lookups at chart borders stay on the surface). A texel claimed by several triangles
    goes to the one it lies deepest inside. Triangles are batched by power-of-two bounding boxes."""
    p = atlas.uv[atlas.faces] * np.array([width, height], dtype=np.float64)  # [F, 3, 2] pixels
    area2, edge_len = _triangle_geometry(p)
    valid = np.abs(area2) > 1e-12
    lo = np.clip(np.floor(p.min(axis=1) - margin - 0.5), 0, None).astype(np.int64)  # [F, 2]
    hi = np.ceil(p.max(axis=1) + margin - 0.5).astype(np.int64)
    size = np.maximum((hi - lo).max(axis=1) + 1, 1)
    bucket = np.ceil(np.log2(size)).astype(np.int64)
    parts = []
    for b in np.unique(bucket[valid]):
        s = 1 << int(b)
        ids = np.nonzero(valid & (bucket == b))[0]
        step = max(1, max_batch // (s * s))
        for start in range(0, len(ids), step):
            f = ids[start : start + step]
            texel, local, score, lam = _candidates(
                p[f], area2[f], edge_len[f], lo[f, 0], lo[f, 1], s, width, height, margin
            )
            parts.append((texel, f[local], score, lam))
    if not parts:
        raise LumisurfError("the UV atlas covers no texel; is the mesh empty or degenerate?")
    texel, face, score, lam = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((score, texel))  # by texel, then score ascending: keep each group's last
    texel, face, lam = texel[order], face[order], lam[order]
    last = np.append(texel[1:] != texel[:-1], True)
    lam = np.clip(lam[last], 0.0, None)
    lam /= np.maximum(lam.sum(axis=1, keepdims=True), 1e-12)
    return TexelSamples(texel[last], face[last], lam)


def evaluate_chunked(
    points: np.ndarray,
    material_fn: MaterialFn,
    keys: tuple[str, ...] = BAKED_KEYS,
    chunk: int = 65536,
    progress: bool = False,
    desc: str = "materials",
) -> dict[str, np.ndarray]:
    """Evaluate ``material_fn`` on float32 ``points`` [N, 3] in chunks; keeps all returned keys
    (``keys`` must be among them). Scalars of shape [n, 1] are squeezed to [n]."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    out: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, len(pts), chunk), desc=desc, disable=not progress, unit="chunk"):
        part = pts[start : start + chunk]
        res = material_fn(part)
        missing = [k for k in keys if k not in res]
        if missing:
            raise LumisurfError(f"material_fn did not return {', '.join(missing)}")
        for k, v in res.items():
            v = np.asarray(v)
            v = v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v
            if v.shape[0] != len(part):
                raise LumisurfError(f"material_fn returned {k} with {v.shape[0]} rows for {len(part)} points")
            out.setdefault(k, []).append(v)
    if not out:
        return {k: np.zeros((0, 3) if k == "albedo" else (0,), np.float32) for k in keys}
    result = {k: np.concatenate(v) for k, v in out.items()}
    if result["albedo"].ndim != 2 or result["albedo"].shape[1] != 3:
        raise LumisurfError(f"material_fn albedo must be [N, 3], got {result['albedo'].shape}")
    return result


def dilate(image: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """Grow ``image`` [H, W, C] from texels where ``mask`` [H, W] is set into empty ones, averaging
    the filled 8-neighbours, ``iterations`` times; texels still empty get the mean covered value."""
    img = np.where(mask[..., None], image, 0.0).astype(np.float64)
    filled = mask.copy()
    h, w = mask.shape
    for _ in range(iterations):
        pad_img = np.pad(img, ((1, 1), (1, 1), (0, 0)))
        pad_m = np.pad(filled, 1).astype(np.float64)
        acc, cnt = np.zeros_like(img), np.zeros((h, w))
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if dy == 1 and dx == 1:
                    continue
                acc += pad_img[dy : dy + h, dx : dx + w]
                cnt += pad_m[dy : dy + h, dx : dx + w]
        grow = (~filled) & (cnt > 0)
        if not grow.any():
            break
        img[grow] = acc[grow] / cnt[grow][:, None]
        filled = filled | grow
    if mask.any():
        img[~filled] = image[mask].mean(axis=0)
    return img


def bake_textures(
    vertices: np.ndarray,
    atlas: UVAtlas,
    material_fn: MaterialFn,
    texture_size: int,
    chunk: int = 65536,
    dilate_px: int = 8,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Bake albedo [S, S, 3] (linear), roughness and metallic [S, S] (float64, dilated) by evaluating
    ``material_fn`` at the surface point of every covered texel. Returns (maps, coverage mask [S, S])."""
    s = texture_size
    samples = rasterize_uv(atlas, s, s)
    corners = np.asarray(vertices, dtype=np.float64)[atlas.vmapping[atlas.faces[samples.face]]]  # [M, 3, 3]
    points = np.einsum("mk,mkc->mc", samples.bary, corners)
    values = evaluate_chunked(points, material_fn, chunk=chunk, progress=progress, desc="baking textures")
    mask = np.zeros(s * s, dtype=bool)
    mask[samples.texel] = True
    mask = mask.reshape(s, s)
    maps = {}
    for key in BAKED_KEYS:
        v = np.asarray(values[key], dtype=np.float64).reshape(len(points), -1)
        flat = np.zeros((s * s, v.shape[1]))
        flat[samples.texel] = v
        img = dilate(flat.reshape(s, s, -1), mask, dilate_px)
        maps[key] = img if key == "albedo" else img[..., 0]
    return maps, mask
