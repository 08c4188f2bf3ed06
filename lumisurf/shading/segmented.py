"""Soft material segmentation for Stage I: K material heads mixed by a learned 3D assignment field.

``C(x) = srgb( sum_k m_k(x) R_k(x) )`` with m = softmax(A(x) / T) (``fields/assignment.py``) and R_k the
linear radiance of head k (``shading/heads.py``: lambert, specular (GGX split-sum, NeRO's shading),
transmission, subsurface). All heads share NeRO's light model (``shading/nero_light.py``): the diffuse
light along the normal and the pre-filtered specular light along the reflected direction (direct / indirect
blended by the occlusion MLP), so the occlusion loss of the ``nero`` preset applies unchanged.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumisurf.data.color_space import linear_to_srgb
from lumisurf.errors import ConfigError
from lumisurf.fields.assignment import AssignmentField
from lumisurf.shading.heads import HEADS, ShadingContext, build_heads, mix_heads, mixture_reflectance
from lumisurf.shading.nero_light import NeroLights, reflect
from lumisurf.shading.split_sum import load_lut


class SegmentedShading(nn.Module):
    """``model_cfg``: a :class:`lumisurf.config.ModelConfig` with ``assignment.enabled``."""

    def __init__(self, model_cfg, feature_dim: int):
        super().__init__()
        a = model_cfg.assignment
        if len(a.heads) != a.K:
            raise ConfigError(
                f"model.assignment: {len(a.heads)} heads {list(a.heads)} for K={a.K} materials; "
                f"give one head per material"
            )
        if a.pretrain_head is not None and a.pretrain_head not in a.heads:
            raise ConfigError(
                f"model.assignment.pretrain_head '{a.pretrain_head}' is not one of the heads {list(a.heads)}"
            )
        if a.init == "materials" and (a.pretrain_head is None or not HEADS[a.pretrain_head].gives_materials):
            raise ConfigError(
                "model.assignment.init=materials clusters the Stage I materials of a head that gives "
                "them (albedo, roughness, metallic): set model.assignment.pretrain_head=specular"
            )
        self.assignment = AssignmentField(a)
        self.lights = NeroLights(model_cfg.nero)
        self.register_buffer("lut", torch.from_numpy(load_lut()).to(torch.float32), persistent=False)
        self.heads = build_heads(a.heads, feature_dim, a.head_hidden, a.head_layers, self.lut)
        self.head_names: tuple[str, ...] = tuple(a.heads)
        # set by the trainer: render with this head alone (one-hot mixture); the other heads still run, on
        # a detached context, so their own fit to the images (``head_rgb``, the head_fit loss) cannot move
        # the geometry or the lights
        self.solo: int | None = None

    def forward(
        self, points: Tensor, normals: Tensor, view_dirs: Tensor, features: Tensor, cam_origins: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Inputs as :class:`lumisurf.shading.nero.NeroShading`. Returns its keys (rgb sRGB [N, 3]; albedo,
        metallic, roughness as probability-weighted means; occ_raw, occ_prob, reflected) plus probs [N, K],
        head_rgb [N, K, 3] (linear radiance of each head) and reflectance [N] (mixture, for the energy term)."""
        n = F.normalize(normals, dim=-1)
        d = F.normalize(view_dirs, dim=-1)
        refl = reflect(d, n)
        spec_out: dict[str, Tensor] = {}

        def specular_light(roughness: Tensor) -> Tensor:
            spec_out.update(self.lights.specular(points, refl, roughness, cam_origins))
            return spec_out["light"]

        ctx = ShadingContext(points, n, d, features, self.lights.diffuse(n), specular_light)
        outs = [head(ctx if self.solo in (None, k) else _detached(ctx)) for k, head in enumerate(self.heads)]
        if not spec_out:  # no specular head: still run the light model for the occlusion terms
            specular_light(torch.ones_like(points[:, :1]))
        if self.solo is None:
            probs = self.assignment.probs(points)  # [N, K]
        else:  # one head renders; the assignment field is not evaluated
            probs = F.one_hot(torch.full_like(points[:, 0], self.solo, dtype=torch.long), len(self.heads))
            probs = probs.to(points)
        rgbs = torch.stack([o["rgb"] for o in outs])  # [K, N, 3]
        res = {
            "rgb": linear_to_srgb(mix_heads(rgbs, probs)).clamp(0.0, 1.0),
            "probs": probs,
            "head_rgb": rgbs.transpose(0, 1),
            "reflectance": mixture_reflectance(outs, probs),
            "occ_raw": spec_out["occ_raw"],
            "occ_prob": spec_out["occ"],
            "reflected": refl,
        }
        res.update(_mixed_params(outs, probs))
        return res


def _detached(ctx: ShadingContext) -> ShadingContext:
    """The same inputs cut from the geometry and light graphs (normals, features and light terms)."""
    light = ctx.specular_light
    spec = (lambda r: light(r).detach()) if callable(light) else light.detach()
    return replace(
        ctx,
        normals=ctx.normals.detach(),
        features=ctx.features.detach(),
        diffuse_light=ctx.diffuse_light.detach(),
        specular_light=spec,
    )


def _mixed_params(outs: list[dict[str, Tensor]], probs: Tensor) -> dict[str, Tensor]:
    """Probability-weighted albedo [N, 3], metallic and roughness [N, 1] (heads without them count 0 / 1)."""
    ones = torch.ones_like(probs[:, :1])
    albedo = sum(probs[:, k : k + 1] * o["albedo"] for k, o in enumerate(outs))
    metallic = sum(probs[:, k : k + 1] * o.get("metallic", 0 * ones) for k, o in enumerate(outs))
    roughness = sum(probs[:, k : k + 1] * o.get("roughness", ones) for k, o in enumerate(outs))
    return {"albedo": albedo, "metallic": metallic, "roughness": roughness}
