"""The Warp path of the sparse-voxel rasterizer: the autograd shell around the kernels of
:mod:`lumisurf.voxels.raster_kernels_warp` and their launches. On CPU a launch is split into interleaved tile
sets run on ``torch.get_num_threads()`` threads, each with its own max-weight and gradient buffers (summed
after), since Warp runs one CPU launch on one thread. Only float32 is handled.
"""

from __future__ import annotations

import torch

from lumisurf.voxels.raster_kernels_warp import IMPORT_ERROR, View, backward_tiles, forward_tiles, wp
from lumisurf.voxels.warp_launch import parts_for, split_launch


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
            forward_tiles,
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
            backward_tiles,
            ctx.geo["n_tiles"],
            dev,
            parts,
            lambda k: shared + [_wp(g_corners[k]), _vec(g_col[k]), _vec(g_normals[k]), _wp(g_inv_s[k]), _wp(g_prio[k])],
        )
        g_prio = g_prio.sum(0) if ctx.needs_input_grad[4] else None
        return g_corners.sum(0), g_col.sum(0), g_normals.sum(0), g_inv_s.sum(), g_prio, None, None


def _view(geo: dict, corners, rgb, normals, inv_s) -> View:
    view = View()
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
    if IMPORT_ERROR is not None:
        return IMPORT_ERROR
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
