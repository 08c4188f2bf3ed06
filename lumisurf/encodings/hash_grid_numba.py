"""Numba kernels for the multi-resolution hash encoding on the CPU (same conventions as `hash_grid_torch`).

Warp runs a CPU launch as one scalar loop on one thread. These kernels are compiled by numba's LLVM (shipped in
its wheel: nothing is compiled at install time) and run on as many threads as torch uses:

* every kernel hands out one level at a time to the threads (``prange`` with a chunk size of 1, the costly fine
  levels first), so one level's table stays in the core's cache, and a table row is only ever written by the
  thread that owns its level: the backward scatter-adds need no atomics and cannot race;
* the trilinear maths is factored per (y, z) corner pair: the two x-neighbours are interpolated first, so a
  point costs 4 row computations and 4 x-edge lerps per level instead of 8 corner weights and derivatives;
* outputs are level-major (``[k, N, F]``, ``[k, N, F, 3]``: each thread writes one contiguous stretch) and are
  turned point-major by one copy, in the autograd shell both kernels share (``hash_grid_kernel``).

float32 only. `lumisurf.encodings.hash_grid` chooses between the kernels and the torch twin (other dtypes or
devices silently, a missing numba or a failing compile with one warning). Compiled code is cached next to this
file (numba ``cache=True``), so only the first run on a machine pays the compile (a few seconds).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lumisurf.encodings.hash_grid_kernel import LevelMajorEncode
from lumisurf.encodings.hash_grid_torch import GridLayout

try:
    import numba
    from numba import njit, prange

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    numba = None
    _IMPORT_ERROR = f"numba import failed: {exc!r}"

_THREADS: int | None = None  # None: as many as torch uses
_P1 = 2654435761  # Instant-NGP hash primes (the x prime is 1); products of grid coordinates fit in int64
_P2 = 805459861

if numba is not None:
    _ONE = np.float32(1.0)
    _ZERO = np.float32(0.0)

    @njit(inline="always", cache=True)
    def _axis(x, bound, res):
        """Clamp, map to grid coords (float32 maths, as the torch twin): cell origin, frac and dp/dx (0 if clamped)."""
        xc = min(max(x, -bound), bound)
        fres = np.float32(res)
        p = (xc + bound) / (bound + bound) * fres
        i0 = min(int(math.floor(p)), res - 1)
        scale = fres / (bound + bound)
        if abs(x) > bound:
            scale = _ZERO
        return i0, p - np.float32(i0), scale

    @njit(inline="always", cache=True)
    def _cell(x, i, bound, res):
        """_axis of point i's three coordinates: (ix, fx, sx, iy, fy, sy, iz, fz, sz)."""
        ix, fx, sx = _axis(x[i, 0], bound, res)
        iy, fy, sy = _axis(x[i, 1], bound, res)
        iz, fz, sz = _axis(x[i, 2], bound, res)
        return ix, fx, sx, iy, fy, sy, iz, fz, sz

    @njit(inline="always", cache=True)
    def _edge(ix, iy, iz, by, bz, res, hashed, mask, offset):
        """Rows of the x-edge (ix, iy + by, iz + bz) -> (ix + 1, ...): dense index or the XOR spatial hash."""
        if hashed:
            h = ((iy + by) * _P1) ^ ((iz + bz) * _P2)
            return offset + ((ix ^ h) & mask), offset + (((ix + 1) ^ h) & mask)
        s = res + 1
        r0 = offset + ix + s * ((iy + by) + s * (iz + bz))
        return r0, r0 + 1

    @njit(inline="always", cache=True)
    def _w1(bit, f):
        """One axis' vertex weight (bit 0: 1 - f, bit 1: f) and its derivative (-1 or 1)."""
        if bit:
            return f, _ONE
        return _ONE - f, -_ONE

    @njit(inline="always", cache=True)
    def _yz(by, bz, fy, fz):
        """Weight of a (y, z) corner pair and its derivatives along y and z (grid units)."""
        wy, gy = _w1(by, fy)
        wz, gz = _w1(bz, fz)
        return wy * wz, gy * wz, wy * gz

    @njit(inline="always", cache=True)
    def _encode_pair(x, i, table, f0, has1, res, offset, hashed, mask, bound):
        """Features f0 and f0 + 1 of point i at one level and their x, y, z derivatives (1 / world units)."""
        ix, fx, sx, iy, fy, sy, iz, fz, sz = _cell(x, i, bound, res)
        a0 = a1 = jx0 = jx1 = jy0 = jy1 = jz0 = jz1 = _ZERO
        for yz in range(4):
            by, bz = yz & 1, yz >> 1
            r0, r1 = _edge(ix, iy, iz, by, bz, res, hashed, mask, offset)
            w, dy, dz = _yz(by, bz, fy, fz)
            u0, u1 = table[r0, f0], table[r1, f0]
            e0 = u1 - u0  # d/dp_x along the edge
            v0 = u0 + fx * e0  # value on the edge
            a0 += w * v0
            jx0 += w * e0
            jy0 += dy * v0
            jz0 += dz * v0
            if has1:
                u0, u1 = table[r0, f0 + 1], table[r1, f0 + 1]
                e1 = u1 - u0
                v1 = u0 + fx * e1
                a1 += w * v1
                jx1 += w * e1
                jy1 += dy * v1
                jz1 += dz * v1
        return a0, a1, jx0 * sx, jx1 * sx, jy0 * sy, jy1 * sy, jz0 * sz, jz1 * sz

    @njit(parallel=True, cache=True)
    def _forward(x, table, res_a, off_a, hashed_a, mask, bound, want_jac, feat, jac):
        """feat [k, N, F] and (want_jac) jac [k, N, F, 3] of the first k = feat.shape[0] levels."""
        k, n, n_feat = feat.shape
        for j in prange(k):
            lvl = k - 1 - j  # fine, costly levels first: the last items handed out are short
            res, offset, hashed = res_a[lvl], off_a[lvl], hashed_a[lvl]
            for f0 in range(0, n_feat, 2):
                has1 = f0 + 1 < n_feat
                for i in range(n):
                    a0, a1, jx0, jx1, jy0, jy1, jz0, jz1 = _encode_pair(
                        x, i, table, f0, has1, res, offset, hashed, mask, bound
                    )
                    feat[lvl, i, f0] = a0
                    if want_jac:
                        jac[lvl, i, f0, 0], jac[lvl, i, f0, 1], jac[lvl, i, f0, 2] = jx0, jy0, jz0
                    if has1:
                        feat[lvl, i, f0 + 1] = a1
                        if want_jac:
                            jac[lvl, i, f0 + 1, 0], jac[lvl, i, f0 + 1, 1], jac[lvl, i, f0 + 1, 2] = jx1, jy1, jz1

    @njit(parallel=True, cache=True)
    def _backward_table(x, res_a, off_a, hashed_a, mask, bound, g_feat, g_jac, has_gjac, g_table):
        """g_table += d loss / d table from g_feat [k, N, F] and (has_gjac) g_jac [k, N, F, 3]."""
        k, n, n_feat = g_feat.shape
        for j in prange(k):  # one thread owns a level's rows: no races
            lvl = k - 1 - j
            res, offset, hashed = res_a[lvl], off_a[lvl], hashed_a[lvl]
            for i in range(n):
                ix, fx, sx, iy, fy, sy, iz, fz, sz = _cell(x, i, bound, res)
                for yz in range(4):
                    by, bz = yz & 1, yz >> 1
                    r0, r1 = _edge(ix, iy, iz, by, bz, res, hashed, mask, offset)
                    w, dy, dz = _yz(by, bz, fy, fz)
                    for f in range(n_feat):
                        m = w * g_feat[lvl, i, f]  # upstream of the edge value v = u0 + fx (u1 - u0)
                        e = _ZERO  # upstream of the edge slope u1 - u0
                        if has_gjac:
                            m += dy * sy * g_jac[lvl, i, f, 1] + dz * sz * g_jac[lvl, i, f, 2]
                            e = w * sx * g_jac[lvl, i, f, 0]
                        g_table[r0, f] += (_ONE - fx) * m - e
                        g_table[r1, f] += fx * m + e

    @njit(parallel=True, cache=True)
    def _backward_x(x, table, res_a, off_a, hashed_a, mask, bound, g_feat, g_jac, has_gjac, g_x):
        """Per-level input gradients g_x [k, N, 3] (summed by the caller), with the second-derivative term
        that an upstream gradient on dfeat_dx brings (trilinear weights have mixed, no pure, second derivatives)."""
        k, n, n_feat = g_feat.shape
        for j in prange(k):
            lvl = k - 1 - j
            res, offset, hashed = res_a[lvl], off_a[lvl], hashed_a[lvl]
            for i in range(n):
                ix, fx, sx, iy, fy, sy, iz, fz, sz = _cell(x, i, bound, res)
                px = py = pz = _ZERO
                for c in range(8):
                    bx, by, bz = c & 1, (c >> 1) & 1, (c >> 2) & 1
                    r0, r1 = _edge(ix, iy, iz, by, bz, res, hashed, mask, offset)
                    row = r1 if bx else r0
                    wx, gx = _w1(bx, fx)
                    wy, gy = _w1(by, fy)
                    wz, gz = _w1(bz, fz)
                    dx, dy, dz = gx * wy * wz, wx * gy * wz, wx * wy * gz  # d w / d p (grid units)
                    dxy, dxz, dyz = gx * gy * wz, gx * wy * gz, wx * gy * gz
                    for f in range(n_feat):
                        v, gf = table[row, f], g_feat[lvl, i, f]
                        qx = qy = qz = _ZERO
                        if has_gjac:  # upstream grad on d feat / d p (grid units)
                            qx, qy, qz = g_jac[lvl, i, f, 0] * sx, g_jac[lvl, i, f, 1] * sy, g_jac[lvl, i, f, 2] * sz
                        px += v * (gf * dx + qy * dxy + qz * dxz)
                        py += v * (gf * dy + qx * dxy + qz * dyz)
                        pz += v * (gf * dz + qx * dxz + qy * dyz)
                g_x[lvl, i, 0], g_x[lvl, i, 1], g_x[lvl, i, 2] = px * sx, py * sy, pz * sz


def set_cpu_threads(n: int | None) -> None:
    """Threads the kernels use (None: torch's ``get_num_threads()``, the default)."""
    global _THREADS
    _THREADS = None if n is None else max(1, int(n))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


_LAYOUTS: dict = {}


def _layout_args(layout: GridLayout) -> tuple:
    """(resolutions, offsets, hashed) as numpy arrays and the hash mask, cached per layout."""
    if layout not in _LAYOUTS:
        _LAYOUTS[layout] = (
            np.asarray(layout.resolutions, np.int64),
            np.asarray(layout.offsets, np.int64),
            np.asarray(layout.hashed, np.bool_),
            2**layout.log2_table_size - 1,
        )
    return _LAYOUTS[layout]


def _call(kernel, *args) -> None:
    """Run a level-parallel kernel on the configured threads, handing out one level at a time."""
    want = torch.get_num_threads() if _THREADS is None else _THREADS
    numba.set_num_threads(max(1, min(want, numba.config.NUMBA_NUM_THREADS)))
    old = numba.set_parallel_chunksize(1)
    try:
        kernel(*args)
    finally:
        numba.set_parallel_chunksize(old)


class _NumbaRunner:
    """The numba kernels behind :class:`LevelMajorEncode`."""

    @staticmethod
    def forward(x, table, layout, bound, want_jac, feat, jac) -> None:
        _call(_forward, _np(x), _np(table), *_layout_args(layout), np.float32(bound), want_jac, _np(feat), _np(jac))

    @staticmethod
    def backward(x, table, layout, bound, g_feat, g_jac, has_gjac, g_table, need_x):
        args = (*_layout_args(layout), np.float32(bound), _np(g_feat), _np(g_jac), has_gjac)
        if g_table is not None:
            _call(_backward_table, _np(x), *args, _np(g_table))
        if not need_x:
            return None
        per_level = x.new_empty(g_feat.shape[0], x.shape[0], 3)  # summed here: no two threads add into one row
        _call(_backward_x, _np(x), _np(table), *args, _np(per_level))
        return per_level.sum(0)


def missing() -> str | None:
    """Why these kernels cannot run here at all (numba not importable), else None."""
    return _IMPORT_ERROR


def apply(x: torch.Tensor, table: torch.Tensor, layout: GridLayout, bound: float, k: int, want_jac: bool):
    """Encode x [N,3] with the first k levels: feat [N, L*F] (and dfeat_dx [N, L*F, 3] when want_jac)."""
    return LevelMajorEncode.apply(x, table, layout, bound, k, want_jac, _NumbaRunner)
