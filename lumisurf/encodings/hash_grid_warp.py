"""NVIDIA Warp kernels for the multi-resolution hash encoding (same conventions as `hash_grid_torch`).

Kernels run over (level, point) pairs, level-major so one level's table stays cache-resident:
forward (features, optionally the analytic Jacobian dfeat_dx) and backward (table gradient by
atomic adds, input gradient including the term from upstream gradients on dfeat_dx).  On CUDA
this is one launch; on CPU (LLVM, one thread per launch) too by default, or the levels are split
round-robin over `set_cpu_threads(n)` concurrent launches (they write disjoint table rows).  The Warp
device follows the tensor's device; tensors are shared zero-copy through `wp.from_torch`.
Only float32 is handled. `lumisurf.encodings.hash_grid` chooses between the kernels and the torch twin
(other dtypes silently, a missing Warp or a failing compile/launch with one warning naming the reason).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from lumisurf.encodings.hash_grid_kernel import LevelMajorEncode
from lumisurf.encodings.hash_grid_torch import GridLayout

try:
    import warp as wp

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    wp = None
    _IMPORT_ERROR = f"warp import failed: {exc!r}"

if wp is not None:
    if hasattr(wp, "LOG_WARNING"):  # no init banner / compile chatter
        wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)
    else:  # pragma: no cover - older Warp
        wp.config.quiet = True
    wp.set_module_options({"enable_backward": False})  # hand-written backward; skip Warp's adjoints
    vec8 = wp.types.vector(length=8, dtype=wp.float32)
    ivec8 = wp.types.vector(length=8, dtype=wp.int32)
    _P1 = wp.constant(wp.uint32(2654435761))  # Instant-NGP hash primes (the x prime is 1)
    _P2 = wp.constant(wp.uint32(805459861))

    @wp.func
    def _axis(x: float, bound: float, res: int):
        """Clamp, map to grid coords; return cell origin, frac in [0,1] and dp/dx (0 if clamped)."""
        xc = wp.clamp(x, -bound, bound)
        fres = float(res)
        p = (xc + bound) / (2.0 * bound) * fres
        i0 = wp.min(int(wp.floor(p)), res - 1)
        scale = fres / (2.0 * bound)
        if wp.abs(x) > bound:
            scale = 0.0
        return i0, p - float(i0), scale

    @wp.func
    def _row(ix: int, iy: int, iz: int, res: int, hashed: int, mask: int, offset: int):
        """Global table row of vertex (ix, iy, iz): dense index or XOR spatial hash."""
        if hashed != 0:
            h = wp.uint32(ix) ^ (wp.uint32(iy) * _P1) ^ (wp.uint32(iz) * _P2)
            return offset + int(h & wp.uint32(mask))
        s = res + 1
        return offset + ix + s * (iy + s * iz)

    @wp.func
    def _w1(bit: int, f: float):
        if bit == 1:
            return f
        return 1.0 - f

    @wp.func
    def _corner(
        c: int,
        ix: int,
        iy: int,
        iz: int,
        fx: float,
        fy: float,
        fz: float,
        res: int,
        hashed: int,
        mask: int,
        offset: int,
    ):
        """Row, weight and d weight / d p (grid units) of corner c of the cell."""
        bx = c & 1
        by = (c >> 1) & 1
        bz = (c >> 2) & 1
        wx = _w1(bx, fx)
        wy = _w1(by, fy)
        wz = _w1(bz, fz)
        row = _row(ix + bx, iy + by, iz + bz, res, hashed, mask, offset)
        gx = float(2 * bx - 1)
        gy = float(2 * by - 1)
        gz = float(2 * bz - 1)
        dw = wp.vec3(gx * wy * wz, wx * gy * wz, wx * wy * gz)
        d2w = wp.vec3(gx * gy * wz, gx * wy * gz, wx * gy * gz)  # (xy, xz, yz) mixed derivatives
        return row, wx * wy * wz, dw, d2w

    @wp.kernel
    def _forward_kernel(
        level_ids: wp.array(dtype=int),
        x: wp.array2d(dtype=float),
        table: wp.array2d(dtype=float),
        res_a: wp.array(dtype=int),
        off_a: wp.array(dtype=int),
        hashed_a: wp.array(dtype=int),
        mask: int,
        bound: float,
        want_jac: int,
        feat: wp.array3d(dtype=float),
        jac: wp.array4d(dtype=float),
    ):
        # level-major threads and [L, N, F] outputs: one level's table stays cache-resident
        i, n = wp.tid()
        l = level_ids[i]
        res = res_a[l]
        hashed = hashed_a[l]
        offset = off_a[l]
        ix, fx, sx = _axis(x[n, 0], bound, res)
        iy, fy, sy = _axis(x[n, 1], bound, res)
        iz, fz, sz = _axis(x[n, 2], bound, res)
        rows = ivec8()
        w = vec8()
        dx = vec8()
        dy = vec8()
        dz = vec8()
        for c in range(8):
            row, wc, dw, d2w = _corner(c, ix, iy, iz, fx, fy, fz, res, hashed, mask, offset)
            rows[c] = row
            w[c] = wc
            dx[c] = dw[0] * sx
            dy[c] = dw[1] * sy
            dz[c] = dw[2] * sz
        n_feat = table.shape[1]
        if want_jac == 0:
            for f in range(n_feat):
                acc = float(0.0)
                for c in range(8):
                    acc += w[c] * table[rows[c], f]
                feat[l, n, f] = acc
        else:
            for f in range(n_feat):
                acc = float(0.0)
                ax = float(0.0)
                ay = float(0.0)
                az = float(0.0)
                for c in range(8):
                    v = table[rows[c], f]
                    acc += w[c] * v
                    ax += dx[c] * v
                    ay += dy[c] * v
                    az += dz[c] * v
                feat[l, n, f] = acc
                jac[l, n, f, 0] = ax
                jac[l, n, f, 1] = ay
                jac[l, n, f, 2] = az

    @wp.kernel
    def _backward_kernel(
        level_ids: wp.array(dtype=int),
        x: wp.array2d(dtype=float),
        table: wp.array2d(dtype=float),
        res_a: wp.array(dtype=int),
        off_a: wp.array(dtype=int),
        hashed_a: wp.array(dtype=int),
        mask: int,
        bound: float,
        g_feat: wp.array3d(dtype=float),
        g_jac: wp.array4d(dtype=float),
        has_gjac: int,
        need_table: int,
        need_x: int,
        g_table: wp.array2d(dtype=float),
        g_x: wp.array2d(dtype=float),
    ):
        i, n = wp.tid()  # upstream grads are level-major [L, N, F(, 3)] like the forward outputs
        l = level_ids[i]
        res = res_a[l]
        hashed = hashed_a[l]
        offset = off_a[l]
        ix, fx, sx = _axis(x[n, 0], bound, res)
        iy, fy, sy = _axis(x[n, 1], bound, res)
        iz, fz, sz = _axis(x[n, 2], bound, res)
        rows = ivec8()
        w = vec8()
        dx = vec8()  # d w / d p (grid units); dp/dx (sx, sy, sz) is applied to q and at the end
        dy = vec8()
        dz = vec8()
        dxy = vec8()  # mixed second derivatives; trilinear weights have no pure ones
        dxz = vec8()
        dyz = vec8()
        for c in range(8):
            row, wc, dw, d2w = _corner(c, ix, iy, iz, fx, fy, fz, res, hashed, mask, offset)
            rows[c] = row
            w[c] = wc
            dx[c] = dw[0]
            dy[c] = dw[1]
            dz[c] = dw[2]
            dxy[c] = d2w[0]
            dxz[c] = d2w[1]
            dyz[c] = d2w[2]
        n_feat = table.shape[1]
        if need_table != 0:
            for f in range(n_feat):
                gf = g_feat[l, n, f]
                coef = w * gf
                if has_gjac != 0:
                    qx = g_jac[l, n, f, 0] * sx
                    qy = g_jac[l, n, f, 1] * sy
                    qz = g_jac[l, n, f, 2] * sz
                    coef += dx * qx + dy * qy + dz * qz
                for c in range(8):
                    wp.atomic_add(g_table, rows[c], f, coef[c])
        if need_x != 0:
            px = float(0.0)
            py = float(0.0)
            pz = float(0.0)
            for f in range(n_feat):
                gf = g_feat[l, n, f]
                qx = float(0.0)  # upstream grad on d feat / d p (grid units)
                qy = float(0.0)
                qz = float(0.0)
                if has_gjac != 0:
                    qx = g_jac[l, n, f, 0] * sx
                    qy = g_jac[l, n, f, 1] * sy
                    qz = g_jac[l, n, f, 2] * sz
                for c in range(8):
                    v = table[rows[c], f]
                    px += v * (gf * dx[c] + qy * dxy[c] + qz * dxz[c])
                    py += v * (gf * dy[c] + qx * dxy[c] + qz * dyz[c])
                    pz += v * (gf * dz[c] + qx * dxz[c] + qy * dyz[c])
            wp.atomic_add(g_x, n, 0, px * sx)
            wp.atomic_add(g_x, n, 1, py * sy)
            wp.atomic_add(g_x, n, 2, pz * sz)


_CACHE: dict = {}  # (what, layout/k, device) -> small int32 tensors
_LOADED: set = set()  # warp devices the kernel module is loaded on
_POOL: ThreadPoolExecutor | None = None
_CPU_THREADS = 1


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _layout_arrays(layout: GridLayout, device: torch.device):
    """Per-level int32 tensors (res, offset, hashed) on `device`."""
    return _cached(
        ("layout", layout, str(device)),
        lambda: tuple(
            torch.tensor(v, dtype=torch.int32, device=device)
            for v in (layout.resolutions, layout.offsets, [int(h) for h in layout.hashed])
        ),
    )


def set_cpu_threads(n: int) -> None:
    """Run CPU kernels as n concurrent launches over disjoint level groups (default 1).

    Helps on an otherwise idle multi-core CPU (about 1.4x for 2 threads at T=19); on a loaded
    machine one launch is faster, hence the default.
    """
    global _CPU_THREADS
    _CPU_THREADS = max(1, min(int(n), 8))


def _level_groups(k: int, device: torch.device) -> list[torch.Tensor]:
    """Active levels 0..k-1 split round-robin over CPU launches (one group on CUDA)."""
    workers = 1 if device.type != "cpu" else max(1, min(_CPU_THREADS, k))
    return _cached(
        ("groups", k, workers, str(device)),
        lambda: [torch.arange(j, k, workers, dtype=torch.int32, device=device) for j in range(workers)],
    )


def _wp(t: torch.Tensor):
    return wp.from_torch(t, requires_grad=False)


def _launch(kernel, groups: list[torch.Tensor], n_pts: int, device: torch.device, args: list, per_group=None):
    """Launch `kernel` over (levels of each group, points).  Groups touch disjoint table rows and
    output levels, so on CPU they run concurrently in threads (Warp releases the GIL)."""
    global _POOL
    wdev = wp.device_from_torch(device)
    stream = wp.stream_from_torch(device) if wdev.is_cuda else None
    if wdev.alias not in _LOADED:  # compile/load once, before any threads race for it
        wp.load_module(__name__, device=wdev)
        _LOADED.add(wdev.alias)

    def one(j: int) -> None:
        extra = per_group[j] if per_group is not None else []
        wp.launch(
            kernel, dim=(len(groups[j]), n_pts), device=wdev, stream=stream, inputs=[_wp(groups[j]), *args, *extra]
        )

    if len(groups) == 1:
        one(0)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=7, thread_name_prefix="lumisurf-hashgrid")
    futures = [_POOL.submit(one, j) for j in range(1, len(groups))]
    one(0)
    for fut in futures:
        fut.result()


class _WarpRunner:
    """The Warp kernels behind :class:`LevelMajorEncode` (launches over level groups; see :func:`_launch`)."""

    @staticmethod
    def forward(x, table, layout, bound, want_jac, feat, jac) -> None:
        args = [
            _wp(x),
            _wp(table),
            *(_wp(a) for a in _layout_arrays(layout, x.device)),
            2**layout.log2_table_size - 1,
            bound,
            int(want_jac),
            _wp(feat),
            _wp(jac),
        ]
        _launch(_forward_kernel, _level_groups(feat.shape[0], x.device), x.shape[0], x.device, args)

    @staticmethod
    def backward(x, table, layout, bound, g_feat, g_jac, has_gjac, g_table, need_x):
        groups = _level_groups(g_feat.shape[0], x.device)
        # one input-gradient buffer per group: groups share points, so they would race on one
        g_xs = [torch.zeros_like(x) if need_x else x.new_zeros(1, 3) for _ in groups]
        need_table = g_table is not None
        args = [
            _wp(x),
            _wp(table),
            *(_wp(a) for a in _layout_arrays(layout, x.device)),
            2**layout.log2_table_size - 1,
            bound,
            _wp(g_feat),
            _wp(g_jac),
            int(has_gjac),
            int(need_table),
            int(need_x),
            _wp(g_table if need_table else table.new_zeros(1, table.shape[1])),
        ]
        _launch(_backward_kernel, groups, x.shape[0], x.device, args, [[_wp(g)] for g in g_xs])
        return (torch.stack(g_xs).sum(0) if len(g_xs) > 1 else g_xs[0]) if need_x else None


def missing() -> str | None:
    """Why these kernels cannot run here at all (warp not importable), else None."""
    return _IMPORT_ERROR


def apply(x: torch.Tensor, table: torch.Tensor, layout: GridLayout, bound: float, k: int, want_jac: bool):
    """Encode x [N,3] with the first k levels: feat [N, L*F] (and dfeat_dx [N, L*F, 3] when want_jac)."""
    wp.init()  # no-op after the first call; compile/load happens on the first launch
    return LevelMajorEncode.apply(x, table, layout, bound, k, want_jac, _WarpRunner)
