"""NVIDIA Warp kernels for the multi-resolution hash encoding (same conventions as `hash_grid_torch`).

One launch covers all (point, level) pairs: forward (features, optionally the analytic Jacobian
dfeat_dx) and backward (table gradient by atomic adds, input gradient including the term coming
from upstream gradients on dfeat_dx).  The kernels run on CPU (LLVM) or CUDA, picked from the
tensor's device; tensors are shared zero-copy through `wp.from_torch`.  Only float32 is handled
here; other dtypes, a missing Warp or a failing compile/launch use the torch twin instead (the
last two with a single `warnings.warn` naming the reason).
"""
from __future__ import annotations

import warnings

import torch

from lumisurf.encodings.hash_grid_torch import (
    GridLayout,
    hash_encode_torch,
    hash_encode_with_grad_torch,
)

try:
    import warp as wp

    wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)  # no init banner / compile chatter
    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    wp = None
    _IMPORT_ERROR = f"warp import failed: {exc!r}"

_FAILURE: str | None = _IMPORT_ERROR  # set once Warp has failed; later calls go straight to torch
_WARNED = False

if wp is not None:
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

    @wp.kernel
    def _forward_kernel(
        x: wp.array2d(dtype=float), table: wp.array2d(dtype=float),
        res_a: wp.array(dtype=int), off_a: wp.array(dtype=int), hashed_a: wp.array(dtype=int),
        mask: int, bound: float, want_jac: int,
        feat: wp.array2d(dtype=float), jac: wp.array3d(dtype=float),
    ):
        l, n = wp.tid()  # level-major: one level's table stays cache-resident
        res = res_a[l]
        ix, fx, sx = _axis(x[n, 0], bound, res)
        iy, fy, sy = _axis(x[n, 1], bound, res)
        iz, fz, sz = _axis(x[n, 2], bound, res)
        rows = ivec8()
        w = vec8()
        dx = vec8()
        dy = vec8()
        dz = vec8()
        for c in range(8):
            bx = c & 1
            by = (c >> 1) & 1
            bz = (c >> 2) & 1
            wx = _w1(bx, fx)
            wy = _w1(by, fy)
            wz = _w1(bz, fz)
            rows[c] = _row(ix + bx, iy + by, iz + bz, res, hashed_a[l], mask, off_a[l])
            w[c] = wx * wy * wz
            dx[c] = float(2 * bx - 1) * wy * wz * sx
            dy[c] = wx * float(2 * by - 1) * wz * sy
            dz[c] = wx * wy * float(2 * bz - 1) * sz
        n_feat = table.shape[1]
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
            col = l * n_feat + f
            feat[n, col] = acc
            if want_jac != 0:
                jac[n, col, 0] = ax
                jac[n, col, 1] = ay
                jac[n, col, 2] = az

    @wp.kernel
    def _backward_kernel(
        x: wp.array2d(dtype=float), table: wp.array2d(dtype=float),
        res_a: wp.array(dtype=int), off_a: wp.array(dtype=int), hashed_a: wp.array(dtype=int),
        mask: int, bound: float,
        g_feat: wp.array2d(dtype=float), g_jac: wp.array3d(dtype=float), has_gjac: int,
        need_table: int, need_x: int,
        g_table: wp.array2d(dtype=float), g_x: wp.array2d(dtype=float),
    ):
        l, n = wp.tid()  # level-major: one level's table stays cache-resident
        res = res_a[l]
        ix, fx, sx = _axis(x[n, 0], bound, res)
        iy, fy, sy = _axis(x[n, 1], bound, res)
        iz, fz, sz = _axis(x[n, 2], bound, res)
        rows = ivec8()
        w = vec8()
        dx = vec8()  # d w / d p (grid units); the dp/dx scales are applied below
        dy = vec8()
        dz = vec8()
        dxy = vec8()  # d2 w / dp_x dp_y (trilinear weights have no pure second derivatives)
        dxz = vec8()
        dyz = vec8()
        for c in range(8):
            bx = c & 1
            by = (c >> 1) & 1
            bz = (c >> 2) & 1
            wx = _w1(bx, fx)
            wy = _w1(by, fy)
            wz = _w1(bz, fz)
            gx = float(2 * bx - 1)
            gy = float(2 * by - 1)
            gz = float(2 * bz - 1)
            rows[c] = _row(ix + bx, iy + by, iz + bz, res, hashed_a[l], mask, off_a[l])
            w[c] = wx * wy * wz
            dx[c] = gx * wy * wz
            dy[c] = wx * gy * wz
            dz[c] = wx * wy * gz
            dxy[c] = gx * gy * wz
            dxz[c] = gx * wy * gz
            dyz[c] = wx * gy * gz
        n_feat = table.shape[1]
        px = float(0.0)
        py = float(0.0)
        pz = float(0.0)
        for f in range(n_feat):
            col = l * n_feat + f
            gf = g_feat[n, col]
            qx = float(0.0)
            qy = float(0.0)
            qz = float(0.0)
            if has_gjac != 0:
                qx = g_jac[n, col, 0] * sx
                qy = g_jac[n, col, 1] * sy
                qz = g_jac[n, col, 2] * sz
            for c in range(8):
                if need_table != 0:
                    wp.atomic_add(g_table, rows[c], f, w[c] * gf + dx[c] * qx + dy[c] * qy + dz[c] * qz)
                if need_x != 0:
                    v = table[rows[c], f]
                    px += v * (gf * dx[c] + qy * dxy[c] + qz * dxz[c])
                    py += v * (gf * dy[c] + qx * dxy[c] + qz * dyz[c])
                    pz += v * (gf * dz[c] + qx * dxz[c] + qy * dyz[c])
        if need_x != 0:
            wp.atomic_add(g_x, n, 0, px * sx)
            wp.atomic_add(g_x, n, 1, py * sy)
            wp.atomic_add(g_x, n, 2, pz * sz)


def _launch_ctx(device: torch.device):
    """Warp device and stream matching a torch device (torch's current stream on CUDA)."""
    wdev = wp.device_from_torch(device)
    stream = wp.stream_from_torch(device) if wdev.is_cuda else None
    return wdev, stream


def _layout_arrays(layout: GridLayout, device: torch.device):
    """Per-level int32 tensors (res, offset, hashed) on `device`."""
    return tuple(torch.tensor(v, dtype=torch.int32, device=device)
                 for v in (layout.resolutions, layout.offsets, [int(h) for h in layout.hashed]))


def _wp(t: torch.Tensor):
    return wp.from_torch(t, requires_grad=False)


class _HashEncodeWarp(torch.autograd.Function):
    """x [N,3], table [R,F] -> feat [N,L*F] (+ jac [N,L*F,3] when want_jac); first-order backward."""

    @staticmethod
    def forward(ctx, x, table, layout: GridLayout, bound: float, k: int, want_jac: bool):
        n_pts, n_feat, n_levels = x.shape[0], table.shape[1], layout.n_levels
        x, table = x.detach().contiguous(), table.detach().contiguous()
        feat = table.new_zeros(n_pts, n_levels * n_feat)
        jac = table.new_zeros(n_pts, n_levels * n_feat, 3) if want_jac else table.new_zeros(1, 1, 3)
        levels = _layout_arrays(layout, x.device)
        if n_pts > 0 and k > 0:
            wdev, stream = _launch_ctx(x.device)
            wp.launch(_forward_kernel, dim=(k, n_pts), device=wdev, stream=stream, inputs=[
                _wp(x), _wp(table), *(_wp(a) for a in levels), 2**layout.log2_table_size - 1,
                float(bound), int(want_jac), _wp(feat), _wp(jac)])
        ctx.save_for_backward(x, table, *levels)
        ctx.meta = (layout, float(bound), k, want_jac)
        if want_jac:
            return feat, jac
        return feat

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_feat, g_jac=None):
        x, table, *levels = ctx.saved_tensors
        layout, bound, k, want_jac = ctx.meta
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_x = torch.zeros_like(x) if need_x else x.new_zeros(1, 3)
        g_table = torch.zeros_like(table) if need_table else table.new_zeros(1, table.shape[1])
        g_feat = torch.zeros(x.shape[0], layout.n_levels * table.shape[1], dtype=table.dtype,
                             device=x.device) if g_feat is None else g_feat.contiguous()
        has_gjac = want_jac and g_jac is not None
        g_jac = g_jac.contiguous() if has_gjac else table.new_zeros(1, 1, 3)
        if x.shape[0] > 0 and k > 0 and (need_x or need_table):
            wdev, stream = _launch_ctx(x.device)
            wp.launch(_backward_kernel, dim=(k, x.shape[0]), device=wdev, stream=stream, inputs=[
                _wp(x), _wp(table), *(_wp(a) for a in levels), 2**layout.log2_table_size - 1, bound,
                _wp(g_feat), _wp(g_jac), int(has_gjac), int(need_table), int(need_x),
                _wp(g_table), _wp(g_x)])
        return (g_x if need_x else None), (g_table if need_table else None), None, None, None, None


def _fallback_reason(x: torch.Tensor, table: torch.Tensor) -> str | None:
    """Why this call cannot use Warp (None if it can); dtype mismatches fall back silently."""
    if _FAILURE is not None:
        return _FAILURE
    if x.dtype != torch.float32 or table.dtype != torch.float32:
        return "dtype"
    return None


def _warn_once(reason: str) -> None:
    global _WARNED
    if not _WARNED:
        _WARNED = True
        warnings.warn(f"lumisurf hash grid: Warp path unavailable, using the torch reference ({reason})",
                      RuntimeWarning, stacklevel=3)


def _run(x, table, layout, bound, active_levels, want_jac: bool):
    global _FAILURE
    torch_fn = hash_encode_with_grad_torch if want_jac else hash_encode_torch
    reason = _fallback_reason(x, table)
    if reason is not None:
        if reason != "dtype":
            _warn_once(reason)
        return torch_fn(x, table, layout, bound, active_levels)
    k = layout.n_levels if active_levels is None else max(0, min(int(active_levels), layout.n_levels))
    try:
        wp.init()  # no-op after the first call
        return _HashEncodeWarp.apply(x, table, layout, bound, k, want_jac)
    except Exception as exc:  # compile or launch failure: remember it and stay on torch
        _FAILURE = f"warp kernel failed: {type(exc).__name__}: {exc}"
        _warn_once(_FAILURE)
        return torch_fn(x, table, layout, bound, active_levels)


def hash_encode_warp(x: torch.Tensor, table: torch.Tensor, layout: GridLayout, bound: float = 1.0,
                     active_levels: int | None = None) -> torch.Tensor:
    """Warp twin of `hash_encode_torch`: x [N,3] float32, table [R,F] -> [N, L*F]."""
    return _run(x, table, layout, bound, active_levels, want_jac=False)


def hash_encode_with_grad_warp(x: torch.Tensor, table: torch.Tensor, layout: GridLayout, bound: float = 1.0,
                               active_levels: int | None = None):
    """Warp twin of `hash_encode_with_grad_torch`: -> (feat [N, L*F], dfeat_dx [N, L*F, 3])."""
    return _run(x, table, layout, bound, active_levels, want_jac=True)


def warp_status() -> str | None:
    """None when the Warp path is usable so far, else the reason it is not."""
    return _FAILURE
