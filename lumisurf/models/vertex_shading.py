"""A neural field's shading at mesh vertices (extract's vertex colors and Stage I material maps).

Normalised frame (the object inside the unit sphere).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SHADING_KEYS = ("rgb", "albedo", "metallic", "roughness", "probs")  # per-point outputs kept at vertices


def field_vertex_shading(model, vertices: np.ndarray, chunk: int = 8192) -> dict[str, np.ndarray]:
    """The field's shading at ``vertices`` [V, 3], as a camera 2 units out along the SDF normal sees it: ``rgb``
    [V, 3] (sRGB) and, with material heads, albedo / metallic / roughness / probs (view-independent)."""
    device = next(model.parameters()).device
    acc: dict[str, list] = {}
    for i in range(0, len(vertices), chunk):
        x = torch.as_tensor(vertices[i : i + chunk], device=device)
        _, feat, grad = model.sdf.sdf_and_gradient(x, create_graph=False)
        n = F.normalize(grad.detach(), dim=-1)
        with torch.no_grad():
            out = model.shade(x, grad.detach(), -n, feat.detach(), x + 2.0 * n)
        for k in SHADING_KEYS:
            if k in out:
                acc.setdefault(k, []).append(out[k].float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in acc.items()}
