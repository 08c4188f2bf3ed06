"""Deferred NeRO shading of a sparse-voxel render (``voxels.shading = nero``, sdf mode).

The rasterizer composites per pixel the opacity ``A``, the expected ray distance ``D`` and the weighted voxel
normal ``N`` (:func:`lumisurf.voxels.raster.rasterize_tiles`). Each pixel with ``A`` above ``min_opacity`` is
then shaded once at ``x = o + d D / A`` with the normal ``N / |N|``, seen along ``d``, by NeRO's split-sum
shading (:class:`lumisurf.shading.nero.NeroShading`) whose material features come from a hash grid at ``x``;
the pixel is ``A shade + (1 - A) background``. Colour then depends on the normal and the reflected
direction, so the geometry cannot buy reflections with bumps as per-voxel SH colour can. The gradients reach
the corners through the normal and depth outputs of the rasterizer.
"""
from __future__ import annotations

from torch import Tensor, nn

from lumisurf.encodings.hash_grid import HashGrid, HashGridConfig
from lumisurf.shading.nero import NeroShading


class DeferredNero(nn.Module):
    """``nero_cfg``: :class:`lumisurf.config.NeroConfig`; the hash grid gives ``n_levels * n_features``
    features per point (normalised frame, bound 1)."""

    def __init__(self, nero_cfg, grid_cfg: HashGridConfig | None = None, min_opacity: float = 1e-3):
        super().__init__()
        self.grid = HashGrid(grid_cfg or HashGridConfig(n_levels=12, log2_table_size=17, max_resolution=512))
        self.nero = NeroShading(nero_cfg, self.grid.output_dim)
        self.min_opacity = min_opacity

    def forward(self, out: dict[str, Tensor], origins: Tensor, dirs: Tensor, background: Tensor) -> dict[str, Tensor]:
        """``out``: rasterizer outputs ``[P, C]``; rays ``[P, 3]``; background ``[3]`` or ``[P, 3]``. Returns
        ``rgb`` ``[P, 3]`` and the material maps ``albedo``, ``metallic``, ``roughness`` (0 off the object)."""
        opacity = out["opacity"]  # [P, 1]
        hit = opacity[:, 0] > self.min_opacity
        a = opacity[hit]
        x = (origins[hit] + dirs[hit] * (out["depth"][hit] / a)).clamp(-1.0, 1.0)
        n = out["normal"][hit]
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        shade = self.nero(x, n, dirs[hit], self.grid(x))
        bg = background.expand_as(origins)
        rgb = bg.clone()
        rgb[hit] = a * shade["rgb"] + (1.0 - a) * bg[hit]
        maps = {"rgb": rgb}
        for key, ch in (("albedo", 3), ("metallic", 1), ("roughness", 1)):
            m = origins.new_zeros(origins.shape[0], ch)
            m[hit] = shade[key].to(m.dtype)
            maps[key] = m
        return maps
