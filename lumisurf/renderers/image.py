"""Render whole views by chunks of rays (no gradients kept)."""
from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras


OPTIONAL_KEYS = ("material_probs",)


def render_view(model, cameras: Cameras, cam: int, bg_color: Tensor, state, chunk: int = 1024,
                downscale: int = 1) -> dict[str, Tensor]:
    """Render camera ``cam``; returns rgb [h,w,3], opacity [h,w,1], depth [h,w,1] (ray distance), normal [h,w,3]
    and, for a segmented model, material_probs [h,w,K] (opacity-weighted)."""
    o, d, h, w = cameras.pixel_rays(cam, downscale)
    out: dict[str, list[Tensor]] = {"rgb": [], "opacity": [], "depth": [], "normal": []}
    was_training = model.training
    model.eval()
    for i in range(0, o.shape[0], chunk):
        oc, dc = o[i:i + chunk], d[i:i + chunk]
        res = model(oc, dc, bg_color.expand(oc.shape[0], 3), state, need_grad_graph=False)
        for k in OPTIONAL_KEYS:  # e.g. the material assignment of a segmented model [chunk, K]
            if k in res:
                out.setdefault(k, []).append(res[k].detach())
        for k in out:
            if k not in OPTIONAL_KEYS:
                out[k].append(res[k].detach())
    model.train(was_training)
    return {k: torch.cat(v, 0).reshape(h, w, -1) for k, v in out.items()}
