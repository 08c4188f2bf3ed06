"""Render whole views by chunks of rays (no gradients kept)."""
from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras


def render_view(model, cameras: Cameras, cam: int, bg_color: Tensor, state, chunk: int = 1024,
                downscale: int = 1) -> dict[str, Tensor]:
    """Render camera ``cam``; returns rgb [h,w,3], opacity [h,w,1], depth [h,w,1] (ray distance), normal [h,w,3]."""
    o, d, h, w = cameras.pixel_rays(cam, downscale)
    out: dict[str, list[Tensor]] = {"rgb": [], "opacity": [], "depth": [], "normal": []}
    was_training = model.training
    model.eval()
    for i in range(0, o.shape[0], chunk):
        oc, dc = o[i:i + chunk], d[i:i + chunk]
        res = model(oc, dc, bg_color.expand(oc.shape[0], 3), state, need_grad_graph=False)
        for k in out:
            out[k].append(res[k].detach())
    model.train(was_training)
    return {k: torch.cat(v, 0).reshape(h, w, -1) for k, v in out.items()}
