"""The one chunked, no-grad render loop: rays by chunks through a model in eval mode, whole views on top."""

from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras

VIEW_KEYS = ("rgb", "opacity", "depth", "normal")
OPTIONAL_KEYS = ("material_probs",)


@torch.no_grad()
def render_rays(
    model, origins: Tensor, dirs: Tensor, bg_color: Tensor, state, chunk: int = 1024, keys: tuple[str, ...] = VIEW_KEYS
) -> dict[str, Tensor]:
    """Render rays ``origins``, unit ``dirs`` ``[N, 3]`` over ``bg_color`` ``[3]`` in chunks of ``chunk`` rays.

    The model runs in eval mode (no training-only terms such as NeRO's occlusion march) and is put back in
    its mode afterwards. Returns ``keys`` (each ``[N, C]``) plus any of ``OPTIONAL_KEYS`` the model gives.
    """
    out: dict[str, list[Tensor]] = {k: [] for k in keys}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, origins.shape[0], chunk):
            oc, dc = origins[i : i + chunk], dirs[i : i + chunk]
            res = model(oc, dc, bg_color.expand(oc.shape[0], 3), state, need_grad_graph=False)
            for k in OPTIONAL_KEYS:  # e.g. the material assignment of a segmented model [chunk, K]
                if k in res and k not in keys:
                    out.setdefault(k, []).append(res[k])
            for k in keys:
                out[k].append(res[k])
    finally:
        model.train(was_training)
    return {k: torch.cat(v, 0) for k, v in out.items()}


def render_view(
    model, cameras: Cameras, cam: int, bg_color: Tensor, state, chunk: int = 1024, downscale: int = 1
) -> dict[str, Tensor]:
    """Render camera ``cam`` (:meth:`lumisurf.models.protocol.SceneModel.render_camera`): rgb [h,w,3], opacity
    [h,w,1], depth [h,w,1] (ray distance), normal [h,w,3] and, for a segmented model, material_probs [h,w,K]
    (opacity-weighted)."""
    return model.render_camera(cameras, cam, bg_color, state, chunk=chunk, downscale=downscale)
