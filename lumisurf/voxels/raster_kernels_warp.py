"""NVIDIA Warp kernels rendering binned sparse voxels, forward and backward (their autograd shell and launches:
:mod:`lumisurf.voxels.raster_warp`); the same maths as the torch twin
:func:`lumisurf.voxels.raster.rasterize_tiles_torch`, which they fall back to (and are tested against).

One thread per 16x16 tile (the CPU layout: a tile's pixel state stays in cache). The forward walks the tile's
sorted entries front to back and, for each, only the pixels inside its screen box whose ray octant matches;
a pixel stops once its transmittance is below ``stop_T``. The backward walks the same list back to front,
recovering each pixel's transmittance by division (opacity is capped at 0.99999), and accumulates the
gradients of the corners, colors, normals and ``inv_s`` with atomic adds (a voxel sits in several tiles).
"""

from __future__ import annotations

try:
    import warp as wp

    IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    wp = None
    IMPORT_ERROR = f"warp import failed: {exc!r}"

_TILE = 16
_STEP_SCALE = 100.0
_MAX_ALPHA = 0.99999
_EPS = 1e-5  # NeuS' stabiliser, as in renderers.volume

if wp is not None:
    if hasattr(wp, "LOG_WARNING"):
        wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)
    wp.set_module_options({"enable_backward": False})

    @wp.func
    def _ray_box(o: wp.vec3, d: wp.vec3, lo: wp.vec3, hi: wp.vec3):
        a = float(0.0)
        b = float(1.0e30)
        for k in range(3):
            dk = d[k]
            if wp.abs(dk) < 1.0e-12:
                dk = 1.0e-12
            t0 = (lo[k] - o[k]) / dk
            t1 = (hi[k] - o[k]) / dk
            a = wp.max(a, wp.min(t0, t1))
            b = wp.min(b, wp.max(t0, t1))
        return a, b

    @wp.func
    def _corner_w(u: wp.vec3, c: int):
        w = float(1.0)
        for k in range(3):
            bit = (c >> (2 - k)) & 1
            if bit == 1:
                w = w * u[k]
            else:
                w = w * (1.0 - u[k])
        return w

    @wp.func
    def _local(o: wp.vec3, d: wp.vec3, t: float, lo: wp.vec3, size: float):
        p = o + d * t
        u = (p - lo) / size
        return wp.vec3(wp.clamp(u[0], 0.0, 1.0), wp.clamp(u[1], 0.0, 1.0), wp.clamp(u[2], 0.0, 1.0))

    @wp.func
    def _field(corners: wp.array2d(dtype=wp.float32), v: int, u: wp.vec3):
        s = float(0.0)
        for c in range(8):
            s = s + _corner_w(u, c) * corners[v, c]
        return s

    @wp.func
    def _exp_linear(x: float):
        if x > 1.1:
            return x
        return wp.exp(x / 1.1 - 1.0 + 0.09531017980432493)  # ln 1.1

    @wp.func
    def _exp_linear_grad(x: float):
        if x > 1.1:
            return 1.0
        return wp.exp(x / 1.1 - 1.0 + 0.09531017980432493) / 1.1

    @wp.func
    def _sample_t(a: float, b: float, k: int, n_samples: int):
        """Midpoint of the k-th of n_samples equal parts of [a, b]."""
        return a + (float(k) + 0.5) / float(n_samples) * wp.max(b - a, 0.0)

    @wp.func
    def _sigma_sum(
        corners: wp.array2d(dtype=wp.float32),
        v: int,
        o: wp.vec3,
        d: wp.vec3,
        a: float,
        b: float,
        lo: wp.vec3,
        size: float,
        n_samples: int,
    ):
        """Sum of the activated densities at the segment's sample points."""
        vol = float(0.0)
        for k in range(n_samples):
            vol = vol + _exp_linear(_field(corners, v, _local(o, d, _sample_t(a, b, k, n_samples), lo, size)))
        return vol

    @wp.func
    def _alpha(
        corners: wp.array2d(dtype=wp.float32),
        v: int,
        o: wp.vec3,
        d: wp.vec3,
        a: float,
        b: float,
        lo: wp.vec3,
        size: float,
        mode: int,
        inv_s: float,
        n_samples: int,
    ):
        if mode == 0:
            vol = _sigma_sum(corners, v, o, d, a, b, lo, size, n_samples)
            return wp.min(1.0 - wp.exp(-_STEP_SCALE * wp.max(b - a, 0.0) / float(n_samples) * vol), _MAX_ALPHA)
        pa = 1.0 / (1.0 + wp.exp(-inv_s * _field(corners, v, _local(o, d, a, lo, size))))
        pb = 1.0 / (1.0 + wp.exp(-inv_s * _field(corners, v, _local(o, d, b, lo, size))))
        return wp.min(wp.clamp((pa - pb + _EPS) / (pa + _EPS), 0.0, 1.0), _MAX_ALPHA)

    @wp.func
    def _alpha_backward(
        corners: wp.array2d(dtype=wp.float32),
        v: int,
        o: wp.vec3,
        d: wp.vec3,
        a: float,
        b: float,
        lo: wp.vec3,
        size: float,
        mode: int,
        inv_s: float,
        n_samples: int,
        g_alpha: float,
        g_corners: wp.array2d(dtype=wp.float32),
        g_inv_s: wp.array(dtype=wp.float32),
    ):
        if mode == 0:
            vol = _sigma_sum(corners, v, o, d, a, b, lo, size, n_samples)
            scale = _STEP_SCALE * wp.max(b - a, 0.0) / float(n_samples)
            if 1.0 - wp.exp(-scale * vol) >= _MAX_ALPHA:
                return
            g_vol = g_alpha * wp.exp(-scale * vol) * scale
            for k in range(n_samples):
                u = _local(o, d, _sample_t(a, b, k, n_samples), lo, size)
                g_raw = g_vol * _exp_linear_grad(_field(corners, v, u))
                for c in range(8):
                    wp.atomic_add(g_corners, v, c, g_raw * _corner_w(u, c))
            return
        ua = _local(o, d, a, lo, size)
        ub = _local(o, d, b, lo, size)
        fa = _field(corners, v, ua)
        fb = _field(corners, v, ub)
        pa = 1.0 / (1.0 + wp.exp(-inv_s * fa))
        pb = 1.0 / (1.0 + wp.exp(-inv_s * fb))
        raw = (pa - pb + _EPS) / (pa + _EPS)
        if raw <= 0.0 or raw >= _MAX_ALPHA:
            return
        g_pa = g_alpha * (pb) / ((pa + _EPS) * (pa + _EPS))
        g_pb = -g_alpha / (pa + _EPS)
        g_fa = g_pa * inv_s * pa * (1.0 - pa)
        g_fb = g_pb * inv_s * pb * (1.0 - pb)
        for c in range(8):
            wp.atomic_add(g_corners, v, c, g_fa * _corner_w(ua, c) + g_fb * _corner_w(ub, c))
        wp.atomic_add(g_inv_s, 0, g_pa * fa * pa * (1.0 - pa) + g_pb * fb * pb * (1.0 - pb))

    @wp.struct
    class View:
        """One view's binned voxels and pixel rays (the inputs both kernels share)."""

        tile_start: wp.array(dtype=wp.int32)
        ent_vox: wp.array(dtype=wp.int32)
        ent_oct: wp.array(dtype=wp.int32)
        bbox: wp.array2d(dtype=wp.int32)
        lo: wp.array(dtype=wp.vec3)
        size: wp.array(dtype=wp.float32)
        corners: wp.array2d(dtype=wp.float32)
        rgb: wp.array(dtype=wp.vec3)
        normals: wp.array(dtype=wp.vec3)
        ray_o: wp.array(dtype=wp.vec3)
        ray_d: wp.array(dtype=wp.vec3)
        ray_oct: wp.array(dtype=wp.int32)
        width: int
        height: int
        tiles_x: int
        mode: int
        inv_s: float
        n_samples: int

    @wp.func
    def _pixel_range(view: View, v: int, t: int):
        """Pixels x0..x1, y0..y1 (half-open) of voxel v's screen box inside tile t."""
        ty = t // view.tiles_x
        tx = t - ty * view.tiles_x
        x0 = wp.max(view.bbox[v, 0], tx * _TILE)
        x1 = wp.min(view.bbox[v, 1], wp.min((tx + 1) * _TILE, view.width))
        y0 = wp.max(view.bbox[v, 2], ty * _TILE)
        y1 = wp.min(view.bbox[v, 3], wp.min((ty + 1) * _TILE, view.height))
        return x0, x1, y0, y1

    @wp.func
    def _segment(view: View, v: int, o: wp.vec3, d: wp.vec3):
        """Entry, exit and opacity of the ray in voxel v (opacity 0 for a miss)."""
        lo = view.lo[v]
        size = view.size[v]
        a, b = _ray_box(o, d, lo, lo + wp.vec3(size, size, size))
        alpha = float(0.0)
        if b > a:
            alpha = _alpha(view.corners, v, o, d, a, b, lo, size, view.mode, view.inv_s, view.n_samples)
        return a, b, alpha

    @wp.kernel
    def forward_tiles(
        view: View,
        stop_t: float,
        trans: wp.array(dtype=wp.float32),
        acc_rgb: wp.array(dtype=wp.vec3),
        acc_depth: wp.array(dtype=wp.float32),
        acc_n: wp.array(dtype=wp.vec3),
        last: wp.array(dtype=wp.int32),
        max_w: wp.array(dtype=wp.float32),
        n_seg: wp.array(dtype=wp.int32),
        tile_last: wp.array(dtype=wp.int32),
        median: wp.array(dtype=wp.float32),
        dist: wp.array(dtype=wp.float32),
        stride: int,
        offset: int,
    ):
        t = wp.tid() * stride + offset
        ty = t // view.tiles_x
        tx = t - ty * view.tiles_x
        alive = (wp.min((tx + 1) * _TILE, view.width) - tx * _TILE) * (
            wp.min((ty + 1) * _TILE, view.height) - ty * _TILE
        )  # pixels of the tile still collecting
        for e in range(view.tile_start[t], view.tile_start[t + 1]):
            if alive == 0:  # every pixel of the tile has stopped
                break
            v = view.ent_vox[e]
            x0, x1, y0, y1 = _pixel_range(view, v, t)
            for y in range(y0, y1):
                for x in range(x0, x1):
                    p = y * view.width + x
                    tp = trans[p]
                    if view.ray_oct[p] != view.ent_oct[e] or tp < stop_t:
                        continue
                    a, b, alpha = _segment(view, v, view.ray_o[p], view.ray_d[p])
                    if b > a:
                        n_seg[p] = n_seg[p] + 1
                    if alpha <= 0.0:
                        continue
                    w = tp * alpha
                    m = 0.5 * (a + b)
                    dist[p] = dist[p] + w * (2.0 * (m * (1.0 - tp) - acc_depth[p]) + w * (b - a) / 3.0)
                    acc_rgb[p] = acc_rgb[p] + w * view.rgb[v]
                    acc_depth[p] = acc_depth[p] + w * m
                    acc_n[p] = acc_n[p] + w * view.normals[v]
                    trans[p] = tp * (1.0 - alpha)
                    if tp >= 0.5 and trans[p] < 0.5:  # the segment where the transmittance crosses one half
                        median[p] = 0.5 * (a + b)
                    if trans[p] < stop_t:
                        alive = alive - 1
                    last[p] = e
                    tile_last[t] = e
                    wp.atomic_max(max_w, v, w)

    @wp.kernel
    def backward_tiles(
        view: View,
        last: wp.array(dtype=wp.int32),
        tile_last: wp.array(dtype=wp.int32),
        t_final: wp.array(dtype=wp.float32),
        g_rgb: wp.array(dtype=wp.vec3),
        g_op: wp.array(dtype=wp.float32),
        g_depth: wp.array(dtype=wp.float32),
        g_n: wp.array(dtype=wp.vec3),
        g_dist: wp.array(dtype=wp.float32),
        depth_final: wp.array(dtype=wp.float32),
        trans: wp.array(dtype=wp.float32),
        suf_rgb: wp.array(dtype=wp.vec3),
        suf_depth: wp.array(dtype=wp.float32),
        suf_n: wp.array(dtype=wp.vec3),
        suf_dist: wp.array(dtype=wp.float32),
        g_corners: wp.array2d(dtype=wp.float32),
        g_col: wp.array(dtype=wp.vec3),
        g_normals: wp.array(dtype=wp.vec3),
        g_inv_s: wp.array(dtype=wp.float32),
        g_prio: wp.array(dtype=wp.float32),
        stride: int,
        offset: int,
    ):
        t = wp.tid() * stride + offset
        n_ent = tile_last[t] + 1 - view.tile_start[t]  # nothing after the tile's last contribution matters
        for k in range(n_ent):
            e = tile_last[t] - k
            v = view.ent_vox[e]
            x0, x1, y0, y1 = _pixel_range(view, v, t)
            for y in range(y0, y1):
                for x in range(x0, x1):
                    p = y * view.width + x
                    if view.ray_oct[p] != view.ent_oct[e] or e > last[p]:
                        continue
                    o = view.ray_o[p]
                    d = view.ray_d[p]
                    a, b, alpha = _segment(view, v, o, d)
                    if alpha <= 0.0:
                        continue
                    t_i = trans[p] / (1.0 - alpha)
                    w = t_i * alpha
                    depth_i = 0.5 * (a + b)
                    inv = 1.0 / (1.0 - alpha)
                    g_alpha = wp.dot(g_rgb[p], t_i * view.rgb[v] - suf_rgb[p] * inv)
                    g_alpha = g_alpha + g_depth[p] * (t_i * depth_i - suf_depth[p] * inv)
                    g_alpha = g_alpha + wp.dot(g_n[p], t_i * view.normals[v] - suf_n[p] * inv)
                    g_alpha = g_alpha + g_op[p] * t_final[p] * inv
                    c_dist = float(0.0)  # dL_dist / dw of this segment (the other weights held)
                    if g_dist[p] != 0.0:
                        after_w = trans[p] - t_final[p]
                        before_wm = depth_final[p] - suf_depth[p] - w * depth_i
                        c_dist = (
                            2.0 * (depth_i * (1.0 - t_i) - before_wm)
                            + 2.0 * (suf_depth[p] - depth_i * after_w)
                            + 2.0 / 3.0 * w * (b - a)
                        )
                        g_alpha = g_alpha + g_dist[p] * (t_i * c_dist - suf_dist[p] * inv)
                        suf_dist[p] = suf_dist[p] + w * c_dist
                    wp.atomic_add(g_col, v, w * g_rgb[p])
                    wp.atomic_add(g_prio, v, wp.abs(g_alpha * alpha))
                    wp.atomic_add(g_normals, v, w * g_n[p])
                    suf_rgb[p] = suf_rgb[p] + w * view.rgb[v]
                    suf_depth[p] = suf_depth[p] + w * depth_i
                    suf_n[p] = suf_n[p] + w * view.normals[v]
                    trans[p] = t_i
                    _alpha_backward(
                        view.corners,
                        v,
                        o,
                        d,
                        a,
                        b,
                        view.lo[v],
                        view.size[v],
                        view.mode,
                        view.inv_s,
                        view.n_samples,
                        g_alpha,
                        g_corners,
                        g_inv_s,
                    )
else:  # pragma: no cover - Warp missing: the torch twin runs (raster_warp.unavailable says why)
    View = forward_tiles = backward_tiles = None
