"""Warp twin of :func:`lumisurf.voxels.binning.bin_voxels`: per-voxel screen box, octants and entry count in
one kernel, the entries written by a second one at offsets from a prefix sum, then one torch sort.

Same conventions and results as the torch version (which is its test reference and fallback); float32 only.
"""

from __future__ import annotations

import torch

from lumisurf.voxels.binned import NEAR, TILE, Binned
from lumisurf.voxels.octree import TRIPLES

try:
    import warp as wp

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    wp = None
    _IMPORT_ERROR = f"warp import failed: {exc!r}"

if wp is not None:
    wp.set_module_options({"enable_backward": False})

    @wp.func
    def _pow2(q: int):
        return wp.lshift(1, q)

    @wp.func
    def _has(bits: int, q: int):
        """Bit q of bits (0 or 1)."""
        return wp.rshift(bits, q) & 1

    @wp.kernel
    def _preprocess(
        lo: wp.array(dtype=wp.vec3),
        size: wp.array(dtype=wp.float32),
        rot: wp.mat33,
        eye: wp.vec3,
        fx: float,
        fy: float,
        cx: float,
        cy: float,
        width: int,
        height: int,
        bbox: wp.array2d(dtype=wp.int32),
        octbits: wp.array(dtype=wp.int32),
        count: wp.array(dtype=wp.int32),
    ):
        v = wp.tid()
        umin = 1.0e30
        umax = -1.0e30
        vmin = 1.0e30
        vmax = -1.0e30
        n_behind = 0
        bits = 0
        for c in range(8):
            off = wp.vec3(float(c // 4), float((c // 2) % 2), float(c % 2))
            corner = lo[v] + off * size[v]
            pc = wp.transpose(rot) * (corner - eye)
            if pc[2] <= NEAR:
                n_behind = n_behind + 1
            zs = wp.max(pc[2], NEAR)
            u = fx * pc[0] / zs + cx
            w = fy * pc[1] / zs + cy
            umin = wp.min(umin, u)
            umax = wp.max(umax, u)
            vmin = wp.min(vmin, w)
            vmax = wp.max(vmax, w)
            q = 0
            if corner[0] < eye[0]:
                q = q + 4
            if corner[1] < eye[1]:
                q = q + 2
            if corner[2] < eye[2]:
                q = q + 1
            bits = bits | _pow2(q)
        x0 = int(wp.floor(umin - 0.5)) + 1
        x1 = int(wp.floor(umax - 0.5)) + 1
        y0 = int(wp.floor(vmin - 0.5)) + 1
        y1 = int(wp.floor(vmax - 0.5)) + 1
        if n_behind > 0:  # straddles the near plane: the whole image; wholly behind: nothing
            x0 = 0
            x1 = width
            y0 = 0
            y1 = height
        if n_behind == 8:
            x1 = 0
            y1 = 0
        x0 = wp.clamp(x0, 0, width)
        x1 = wp.clamp(x1, 0, width)
        y0 = wp.clamp(y0, 0, height)
        y1 = wp.clamp(y1, 0, height)
        bbox[v, 0] = x0
        bbox[v, 1] = x1
        bbox[v, 2] = y0
        bbox[v, 3] = y1
        octbits[v] = bits
        n_oct = 0
        for q in range(8):
            n_oct = n_oct + _has(bits, q)
        ntx = 0
        nty = 0
        if x1 > x0 and y1 > y0:
            ntx = (x1 - 1) // TILE - x0 // TILE + 1
            nty = (y1 - 1) // TILE - y0 // TILE + 1
        count[v] = ntx * nty * n_oct

    @wp.kernel
    def _emit(
        path: wp.array(dtype=wp.int64),
        bbox: wp.array2d(dtype=wp.int32),
        octbits: wp.array(dtype=wp.int32),
        offset: wp.array(dtype=wp.int64),
        tiles_x: int,
        triples: wp.int64,
        key: wp.array(dtype=wp.int64),
        ent_vox: wp.array(dtype=wp.int32),
        ent_oct: wp.array(dtype=wp.int32),
    ):
        v = wp.tid()
        i = offset[v]
        if bbox[v, 1] <= bbox[v, 0] or bbox[v, 3] <= bbox[v, 2]:
            return
        for ty in range(bbox[v, 2] // TILE, (bbox[v, 3] - 1) // TILE + 1):
            for tx in range(bbox[v, 0] // TILE, (bbox[v, 1] - 1) // TILE + 1):
                tile = wp.int64(ty * tiles_x + tx)
                for q in range(8):
                    if _has(octbits[v], q) == 1:
                        key[i] = (tile << wp.int64(48)) | (path[v] ^ (wp.int64(q) * triples))
                        ent_vox[i] = wp.int32(v)
                        ent_oct[i] = wp.int32(q)
                        i = i + wp.int64(1)


def unavailable(lo: torch.Tensor) -> str | None:
    """Why the Warp binning cannot run on these inputs (None if it can)."""
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    return None if lo.dtype == torch.float32 else "dtype"


def bin_voxels_warp(path, lo, size, c2w, fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> Binned:
    """:func:`lumisurf.voxels.binning.bin_voxels` with the per-voxel work in Warp kernels."""
    wp.init()
    n, dev = path.shape[0], lo.device
    wdev = wp.device_from_torch(dev)
    bbox = torch.zeros(n, 4, dtype=torch.int32, device=dev)
    octbits = torch.zeros(n, dtype=torch.int32, device=dev)
    count = torch.zeros(n, dtype=torch.int32, device=dev)
    rot = wp.mat33(*c2w[:3, :3].reshape(-1).tolist())
    eye = wp.vec3(*c2w[:3, 3].tolist())
    lo_w = wp.from_torch(lo.contiguous(), dtype=wp.vec3)
    wp.launch(
        _preprocess,
        dim=n,
        device=wdev,
        inputs=[
            lo_w,
            wp.from_torch(size.contiguous()),
            rot,
            eye,
            float(fx),
            float(fy),
            float(cx),
            float(cy),
            width,
            height,
            wp.from_torch(bbox),
            wp.from_torch(octbits),
            wp.from_torch(count),
        ],
    )
    ends = count.long().cumsum(0)
    total = int(ends[-1]) if n else 0
    key = torch.empty(total, dtype=torch.long, device=dev)
    vox = torch.empty(total, dtype=torch.int32, device=dev)
    octant = torch.empty(total, dtype=torch.int32, device=dev)
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    wp.launch(
        _emit,
        dim=n,
        device=wdev,
        inputs=[
            wp.from_torch(path.contiguous()),
            wp.from_torch(bbox),
            wp.from_torch(octbits),
            wp.from_torch((ends - count.long()).contiguous()),
            tiles_x,
            wp.int64(TRIPLES),
            wp.from_torch(key),
            wp.from_torch(vox),
            wp.from_torch(octant),
        ],
    )
    key, perm = torch.sort(key)
    tile_start = torch.searchsorted(key >> 48, torch.arange(tiles_x * tiles_y + 1, device=dev))
    return Binned(vox[perm].long(), octant[perm].long(), tile_start, bbox.long(), tiles_x, tiles_y)
