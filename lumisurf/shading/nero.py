"""NeRO Stage I shading (Liu et al. 2023, "NeRO: Neural Geometry and BRDF Reconstruction of Reflective
Objects from Multiview Images"): a split-sum microfacet model with neural lights.

At a point x with unit normal n seen along the ray direction d (camera -> point):
  metallic m, roughness rho, albedo a = sigmoid(MLP([feature, x]))        (three heads)
  r = d - 2 (d.n) n                                                       (reflected direction)
  diffuse  = a (1 - m) L_outer(IDE(n, 1))
  specular = L_spec(x, r, rho) (F0 scale(n.v, rho) + bias(n.v, rho)),   F0 = 0.04 (1 - m) + m a
  L_spec   = L_inner(x, IDE(r, rho)) occ(x, r) + L_outer(IDE(r, rho)) (1 - occ(x, r))
  rgb      = srgb(diffuse + specular) clamped to [0, 1]
with (scale, bias) from the split-sum GGX table (``lumisurf.shading.split_sum``). Lights live in
``lumisurf.shading.nero_light``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumisurf.data.color_space import linear_to_srgb
from lumisurf.errors import ConfigError
from lumisurf.shading.nero_light import NeroLights, make_mlp, reflect, set_output_bias
from lumisurf.shading.split_sum import fresnel_f0, load_lut, split_sum_specular


class MaterialHeads(nn.Module):
    """Metallic [N,1], roughness [N,1], albedo [N,3] in (0, 1) from [feature, position] (one MLP each)."""

    def __init__(self, cfg, feature_dim: int):
        super().__init__()
        d_in = feature_dim + 3
        mlp = lambda d_out: make_mlp(d_in, d_out, cfg)  # noqa: E731
        self.metallic, self.roughness, self.albedo = mlp(1), mlp(1), mlp(3)
        set_output_bias(self.metallic, cfg.metallic_init)
        set_output_bias(self.roughness, cfg.roughness_init)

    def forward(self, points: Tensor, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = torch.cat([features, points], dim=-1)
        return (torch.sigmoid(self.metallic(h)), torch.sigmoid(self.roughness(h)), torch.sigmoid(self.albedo(h)))


class NeroShading(nn.Module):
    """NeRO Stage I shading network; ``cfg`` is a :class:`lumisurf.config.NeroConfig`."""

    def __init__(self, cfg, feature_dim: int, lut: Tensor | None = None):
        super().__init__()
        if not 1 <= cfg.ide_degree <= 5:
            raise ConfigError(f"model.nero.ide_degree must be in 1..5, got {cfg.ide_degree}")
        if cfg.layers < 1:
            raise ConfigError(f"model.nero.layers must be >= 1, got {cfg.layers}")
        self.cfg = cfg
        self.materials = MaterialHeads(cfg, feature_dim)
        self.lights = NeroLights(cfg)
        lut = torch.from_numpy(load_lut()) if lut is None else lut
        self.register_buffer("lut", lut.to(torch.float32), persistent=False)  # [256, 256, 2], rebuilt on load

    def forward(
        self, points: Tensor, normals: Tensor, view_dirs: Tensor, features: Tensor, cam_origins: Tensor | None = None
    ) -> dict[str, Tensor]:
        """points [N,3], normals [N,3] (SDF gradient, any length), view_dirs [N,3] (ray directions, camera ->
        point), features [N,F], cam_origins [N,3] (camera centres; only the human light uses them).

        Returns rgb [N,3] (sRGB in [0,1]); albedo [N,3], metallic [N,1], roughness [N,1] in (0,1); diffuse,
        specular [N,3] (linear); occ_prob [N,1] in [0,1], occ_raw [N,1] (unclamped, for the occlusion
        loss) and reflected [N,3] (unit reflected direction).
        """
        n = F.normalize(normals, dim=-1)
        d = F.normalize(view_dirs, dim=-1)
        refl = reflect(d, n)
        n_dot_v = (-(d * n).sum(-1, keepdim=True)).clamp(0.0, 1.0)
        metallic, roughness, albedo = self.materials(points, features)
        diffuse = albedo * (1.0 - metallic) * self.lights.diffuse(n)
        spec = self.lights.specular(points, refl, roughness, cam_origins)
        specular = split_sum_specular(spec["light"], fresnel_f0(albedo, metallic), self.lut, n_dot_v, roughness)
        rgb = linear_to_srgb(diffuse + specular).clamp(0.0, 1.0)
        return {
            "rgb": rgb,
            "albedo": albedo,
            "metallic": metallic,
            "roughness": roughness,
            "diffuse": diffuse,
            "specular": specular,
            "occ_prob": spec["occ"],
            "occ_raw": spec["occ_raw"],
            "reflected": refl,
            "specular_light": spec["light"],
        }
