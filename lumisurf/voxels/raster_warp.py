"""NVIDIA Warp kernels rendering binned sparse voxels, forward and backward; the same maths as the torch twin
:func:`lumisurf.voxels.raster.rasterize_tiles_torch`, which they fall back to (and are tested against).

One thread per 16x16 tile (the CPU layout: a tile's pixel state stays in cache). The forward walks the tile's
sorted entries front to back and, for each, only the pixels inside its screen box whose ray octant matches;
a pixel stops once its transmittance is below ``stop_T``. The backward walks the same list back to front,
recovering each pixel's transmittance by division (opacity is capped at 0.99999), and accumulates the
gradients of the corners, colors, normals and ``inv_s`` with atomic adds (a voxel sits in several tiles).
On CPU a launch is split into interleaved tile sets run on ``torch.get_num_threads()`` threads, each with its
own max-weight and gradient buffers (summed after), since Warp runs one CPU launch on one thread.
Only float32 is handled.
"""

from __future__ import annotations

import torch

from lumisurf.voxels.warp_launch import parts_for, split_launch

try:
    import warp as wp

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    wp = None
    _IMPORT_ERROR = f"warp import failed: {exc!r}"

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
    class _View:
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
    def _pixel_range(view: _View, v: int, t: int):
        """Pixels x0..x1, y0..y1 (half-open) of voxel v's screen box inside tile t."""
        ty = t // view.tiles_x
        tx = t - ty * view.tiles_x
        x0 = wp.max(view.bbox[v, 0], tx * _TILE)
        x1 = wp.min(view.bbox[v, 1], wp.min((tx + 1) * _TILE, view.width))
        y0 = wp.max(view.bbox[v, 2], ty * _TILE)
        y1 = wp.min(view.bbox[v, 3], wp.min((ty + 1) * _TILE, view.height))
        return x0, x1, y0, y1

    @wp.func
    def _segment(view: _View, v: int, o: wp.vec3, d: wp.vec3):
        """Entry, exit and opacity of the ray in voxel v (opacity 0 for a miss)."""
        lo = view.lo[v]
        size = view.size[v]
        a, b = _ray_box(o, d, lo, lo + wp.vec3(size, size, size))
        alpha = float(0.0)
        if b > a:
            alpha = _alpha(view.corners, v, o, d, a, b, lo, size, view.mode, view.inv_s, view.n_samples)
        return a, b, alpha

    @wp.kernel
    def _forward_tiles(
        view: _View,
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
    def _backward_tiles(
        view: _View,
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


def _wp(t: torch.Tensor, dtype=None):
    return wp.from_torch(t.contiguous(), dtype=dtype, requires_grad=False)


def _vec(t: torch.Tensor):
    return _wp(t.float(), wp.vec3)


class _RasterWarp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, corners, rgb, normals, inv_s, priority, geo: dict, background):
        n_pix, dev = geo["ray_o"].shape[0], corners.device
        parts = parts_for(dev, geo["n_tiles"])
        trans = torch.ones(n_pix, device=dev)
        acc_rgb, acc_n = torch.zeros(n_pix, 3, device=dev), torch.zeros(n_pix, 3, device=dev)
        acc_depth = torch.zeros(n_pix, device=dev)
        last = torch.full((n_pix,), -1, dtype=torch.int32, device=dev)
        max_w = torch.zeros(parts, corners.shape[0], device=dev)  # one row per thread: no shared atomics
        n_seg = torch.zeros(n_pix, dtype=torch.int32, device=dev)
        tile_last = (geo["tile_start"][:-1] - 1).contiguous()  # "no contribution": the backward walks nothing
        median, dist = torch.zeros(n_pix, device=dev), torch.zeros(n_pix, device=dev)
        view = _view(geo, corners, rgb, normals, inv_s)
        shared = [view, geo["stop_t"], _wp(trans), _vec(acc_rgb), _wp(acc_depth), _vec(acc_n), _wp(last)]
        split_launch(
            _forward_tiles,
            geo["n_tiles"],
            dev,
            parts,
            lambda k: shared + [_wp(max_w[k]), _wp(n_seg), _wp(tile_last), _wp(median), _wp(dist)],
        )
        max_w = max_w.amax(0)
        ctx.geo, ctx.view, ctx.parts = geo, view, parts
        ctx.save_for_backward(corners, rgb, normals, trans, last, background, tile_last, acc_depth)
        ctx.mark_non_differentiable(max_w, n_seg, median)
        rgb_out = acc_rgb + trans[:, None] * background
        return (
            rgb_out,
            (1.0 - trans)[:, None],
            acc_depth[:, None],
            acc_n,
            max_w,
            n_seg,
            median[:, None],
            dist[:, None],
        )

    @staticmethod
    def backward(ctx, g_rgb, g_op, g_depth, g_n, _g_max_w, _g_n_seg, _g_median, g_dist):
        corners, rgb, normals, trans, last, background, tile_last, depth_final = ctx.saved_tensors
        dev, parts = corners.device, ctx.parts
        # per-thread gradient buffers (summed after): the threads' tiles share voxels
        g_corners, g_col = corners.new_zeros(parts, *corners.shape), rgb.new_zeros(parts, *rgb.shape)
        g_normals, g_inv_s = normals.new_zeros(parts, *normals.shape), corners.new_zeros(parts, 1)
        g_prio = corners.new_zeros(parts, corners.shape[0])
        suf_rgb = (trans[:, None] * background).expand(trans.shape[0], 3).contiguous()
        shared = [
            ctx.view,
            _wp(last),
            _wp(tile_last),
            _wp(trans),
            _vec(g_rgb),
            _wp(g_op.reshape(-1)),
            _wp(g_depth.reshape(-1)),
            _vec(g_n),
            _wp(g_dist.reshape(-1).contiguous()),
            _wp(depth_final),
            _wp(trans.clone()),
            _vec(suf_rgb),
            _wp(torch.zeros_like(trans)),
            _vec(torch.zeros_like(suf_rgb)),
            _wp(torch.zeros_like(trans)),
        ]
        split_launch(
            _backward_tiles,
            ctx.geo["n_tiles"],
            dev,
            parts,
            lambda k: shared + [_wp(g_corners[k]), _vec(g_col[k]), _vec(g_normals[k]), _wp(g_inv_s[k]), _wp(g_prio[k])],
        )
        g_prio = g_prio.sum(0) if ctx.needs_input_grad[4] else None
        return g_corners.sum(0), g_col.sum(0), g_normals.sum(0), g_inv_s.sum(), g_prio, None, None


def _view(geo: dict, corners, rgb, normals, inv_s) -> _View:
    view = _View()
    for name, key in (
        ("tile_start", "tile_start"),
        ("ent_vox", "voxel"),
        ("ent_oct", "octant"),
        ("bbox", "bbox"),
        ("size", "size"),
        ("ray_oct", "ray_oct"),
    ):
        setattr(view, name, _wp(geo[key]))
    view.lo, view.ray_o, view.ray_d = _vec(geo["lo"]), _vec(geo["ray_o"]), _vec(geo["ray_d"])
    view.corners, view.rgb, view.normals = _wp(corners), _vec(rgb), _vec(normals)
    view.width, view.height, view.tiles_x = geo["width"], geo["height"], geo["tiles_x"]
    view.mode, view.inv_s, view.n_samples = geo["mode"], float(inv_s), geo["n_samples"]
    return view


def unavailable(tensors) -> str | None:
    """Why these inputs cannot take the Warp path (None if they can)."""
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    if any(t.dtype != torch.float32 for t in tensors):
        return "dtype"
    return None


def rasterize_tiles_warp(geo: dict, corners, rgb, normals, inv_s, background, priority=None):
    """Warp twin of the tile loop; ``geo`` holds the int32 binning and float32 voxel boxes and rays.

    Returns rgb ``[P, 3]``, opacity ``[P, 1]``, depth ``[P, 1]``, normal ``[P, 3]``, max weight ``[N]``, the
    number of ray-voxel segments each pixel evaluated ``[P]`` (int32), the median depth ``[P, 1]`` and the
    distortion ``[P, 1]`` (:func:`lumisurf.voxels.raster_torch.distortion`). ``priority`` (ones ``[N]``, requiring
    grad) receives ``sum |dL/dalpha * alpha|`` per voxel as its gradient (see ``raster_torch.PriorityTap``).
    """
    wp.init()
    inv_s_t = torch.as_tensor(inv_s, dtype=torch.float32, device=corners.device).reshape(())
    if priority is None:
        priority = torch.ones(corners.shape[0], device=corners.device)
    return _RasterWarp.apply(
        corners.contiguous(),
        rgb.contiguous(),
        normals.contiguous(),
        inv_s_t,
        priority,
        geo,
        background.expand(geo["ray_o"].shape[0], 3).contiguous(),
    )
