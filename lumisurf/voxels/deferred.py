"""Deferred shading of a sparse-voxel render (``voxels.model.shading = nero | segmented``, sdf mode).

The rasterizer composites per pixel the opacity ``A``, the expected ray distance ``D`` and the weighted voxel
normal ``N`` (:func:`lumisurf.voxels.raster.rasterize_tiles`). Each pixel with ``A`` above ``min_opacity`` is
then shaded once at ``x = o + d D / A`` with the normal ``N / |N|``, seen along ``d``, by our field shading
with material features from a hash grid at ``x``: NeRO's split-sum shading
(:class:`lumisurf.shading.nero.NeroShading`) or the K-head material mixture of ``lumisurf-seg``
(:class:`lumisurf.shading.segmented.SegmentedShading`, ``model.assignment``). The pixel is
``A shade + (1 - A) background``. Color then depends on the normal and the reflected direction, so the
geometry cannot buy reflections with bumps as per-voxel SH color can. The gradients reach the corners through
the normal and depth outputs of the rasterizer. ``amp``: the networks run under bfloat16 autocast on CUDA
(ignored on CPU, where it does not pay).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
from torch import Tensor, nn

from lumisurf.encodings.hash_grid import HashGrid, HashGridConfig
from lumisurf.shading.nero import NeroShading
from lumisurf.shading.segmented import SegmentedShading

MAPS = (("albedo", 3), ("metallic", 1), ("roughness", 1))


class DeferredShading(nn.Module):
    """``model_cfg``: :class:`lumisurf.config.ModelConfig` (its ``nero``, and ``assignment`` for segmented); the
    hash grid gives ``n_levels * n_features`` features per point (normalised frame, bound 1)."""

    def __init__(
        self,
        kind: Literal["nero", "segmented"],
        model_cfg,
        grid_cfg: HashGridConfig | None = None,
        min_opacity: float = 1e-3,
        amp: bool = False,
    ):
        super().__init__()
        self.grid = HashGrid(grid_cfg or HashGridConfig(n_levels=12, log2_table_size=17, max_resolution=512))
        if kind == "nero":
            self.shader = NeroShading(model_cfg.nero, self.grid.output_dim)
        else:
            self.shader = SegmentedShading(model_cfg, self.grid.output_dim)
        self.kind, self.min_opacity, self.amp = kind, min_opacity, amp

    def _autocast(self, device: torch.device):
        if self.amp and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, out: dict[str, Tensor], origins: Tensor, dirs: Tensor, background: Tensor) -> dict[str, Tensor]:
        """``out``: rasterizer outputs ``[P, C]``; rays ``[P, 3]``; background ``[3]`` or ``[P, 3]``. Returns
        ``rgb`` ``[P, 3]``, the material maps ``albedo``, ``metallic``, ``roughness`` (0 off the object) and, for
        the mixture, ``material_probs`` ``[P, K]``."""
        opacity = out["opacity"]  # [P, 1]
        hit = opacity[:, 0] > self.min_opacity
        a = opacity[hit]
        x = (origins[hit] + dirs[hit] * (out["depth"][hit] / a)).clamp(-1.0, 1.0)
        n = out["normal"][hit]
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        with self._autocast(origins.device):
            shade = self.shader(x, n, dirs[hit], self.grid(x))
        bg = background.expand_as(origins)
        rgb = bg.clone()
        rgb[hit] = a * shade["rgb"].to(rgb.dtype) + (1.0 - a) * bg[hit]
        maps = {"rgb": rgb}
        extra = (("material_probs", shade["probs"].shape[-1]),) if "probs" in shade else ()
        for key, ch in MAPS + extra:
            m = origins.new_zeros(origins.shape[0], ch)
            m[hit] = shade["probs" if key == "material_probs" else key].to(m.dtype)
            maps[key] = m
        return maps
