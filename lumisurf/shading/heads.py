"""Material heads for soft material segmentation: each maps (feature, position) to BRDF parameters and
LINEAR outgoing radiance, given light terms that the Stage I light model has already integrated.

Conventions (all tensors [N, ...], normalised world frame):

* ``normals`` unit outward; ``view_dirs`` unit, camera -> point (the ray direction), so n.v = -n.d.
* ``diffuse_light`` is the cosine-weighted irradiance divided by pi (NeRO), so a Lambert surface of
  albedo a reflects ``a * diffuse_light``.
* ``specular_light`` is the pre-integrated radiance along the reflected direction for the head's
  roughness (split-sum's first factor). It may be a tensor [N, 3] or a callable
  ``roughness [N, 1] -> [N, 3]`` (then roughness also learns through the light look-up).
* ``lut`` [N, 2] is the split-sum (scale, bias) at (n.v, roughness); when None the specular head samples
  its own table (``lut_table`` [R, C, 2], ``lumisurf.shading.split_sum``).

Each head returns a dict with "rgb" [N, 3] (linear), its parameters, and "reflectance" [N]: the largest
per-channel directional albedo of the head (<= 1 means energy conserving), used by the energy term.
Parameters are squashed to their valid ranges by sigmoid; the heads hold no light model of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lumisurf.fields.mlp import mlp
from lumisurf.registry import Registry
from lumisurf.shading.split_sum import fresnel_f0, sample_lut, specular_albedo

LightTerm = Tensor | Callable[[Tensor], Tensor]


@dataclass
class ShadingContext:
    """Per-point inputs shared by all heads (see module docstring for units)."""

    points: Tensor  # [N, 3]
    normals: Tensor  # [N, 3] unit
    view_dirs: Tensor  # [N, 3] unit, camera -> point
    features: Tensor  # [N, F] SDF features
    diffuse_light: Tensor  # [N, 3] irradiance / pi
    specular_light: LightTerm  # [N, 3] or roughness [N, 1] -> [N, 3]
    lut: Tensor | None = None  # [N, 2] split-sum (scale, bias) or None
    env_fn: Callable[[Tensor], Tensor] | None = None  # direction [N, 3] -> radiance [N, 3] (transmission)
    back_light: Tensor | None = None  # [N, 3] irradiance / pi for the normal -n (subsurface)

    @property
    def n_dot_v(self) -> Tensor:  # [N]
        return (-(self.normals * self.view_dirs).sum(-1)).clamp(0.0, 1.0)


HEADS: Registry[type[_Head]] = Registry("material head")


class _Head(nn.Module):
    """Shared parts: MLP on [feature, position] -> ``n_params`` logits, squashed by sigmoid.

    A head's facts live on its class: ``view_dependent`` (its radiance changes with the view direction, so
    the metal prior counts it as "metal-like"), ``view_rank`` (0 = most view-dependent; the material lift
    gives the most specular cluster to the lowest rank), ``gives_materials`` (its parameters are
    albedo [0:3], metallic [3], roughness [4]: the lift clusters them, the metal prior reads metallic) and
    ``uses_lut`` (it samples the split-sum table, passed as ``lut_table``).
    """

    n_params = 3
    view_dependent = False
    view_rank = 99
    gives_materials = False
    uses_lut = False

    def __init__(self, feature_dim: int, hidden: int = 64, layers: int = 2, init_bias: list | None = None):
        super().__init__()
        self.mlp = mlp([feature_dim + 3] + [hidden] * layers + [self.n_params])
        if init_bias is not None:
            with torch.no_grad():
                self.mlp[-1].bias.copy_(torch.tensor(init_bias, dtype=self.mlp[-1].bias.dtype))

    def params01(self, ctx: ShadingContext) -> Tensor:
        """[N, n_params] in (0, 1)."""
        return self.params_at(ctx.points, ctx.features)

    def params_at(self, points: Tensor, features: Tensor) -> Tensor:
        """The head's parameters [N, n_params] in (0, 1) at points [N, 3] with SDF features [N, F]."""
        return torch.sigmoid(self.mlp(torch.cat([features, points], -1)))


def _light(term: LightTerm, roughness: Tensor) -> Tensor:
    return term(roughness) if callable(term) else term


@HEADS.register("lambert")
class LambertHead(_Head):
    """``rgb = albedo * diffuse_light``; albedo in [0, 1]."""

    n_params = 3
    view_rank = 3

    def forward(self, ctx: ShadingContext) -> dict[str, Tensor]:
        albedo = self.params01(ctx)
        return {"rgb": albedo * ctx.diffuse_light, "albedo": albedo, "reflectance": albedo.amax(-1)}


@HEADS.register("specular")
class SpecularHead(_Head):
    """GGX microfacet via split-sum (NeRO): albedo, metallic, roughness in [0, 1].

    ``rgb = albedo (1 - m) diffuse_light + specular_light * (F0 scale + bias)``, F0 = 0.04 (1 - m) + albedo m.
    ``energy_compensated``: the diffuse term is weighted by (1 - specular albedo) per channel so the
    directional albedo never exceeds 1 (otherwise the energy loss is what keeps it <= 1).
    """

    n_params = 5
    view_dependent = True
    view_rank = 0
    gives_materials = True
    uses_lut = True

    def __init__(
        self,
        feature_dim: int,
        hidden: int = 64,
        layers: int = 2,
        lut_table: Tensor | None = None,
        energy_compensated: bool = False,
    ):
        super().__init__(feature_dim, hidden, layers, init_bias=[0.0, 0.0, 0.0, -2.0, 0.0])
        self.energy_compensated = energy_compensated
        self.register_buffer("lut_table", lut_table, persistent=False)

    def forward(self, ctx: ShadingContext) -> dict[str, Tensor]:
        p = self.params01(ctx)
        albedo, metallic, roughness = p[:, :3], p[:, 3:4], p[:, 4:5]
        lut = ctx.lut
        if lut is None:
            if self.lut_table is None:
                raise ValueError("SpecularHead needs ctx.lut or a lut_table")
            lut = sample_lut(self.lut_table.to(p), ctx.n_dot_v, roughness[:, 0])  # [N, 2]
        spec_albedo = specular_albedo(fresnel_f0(albedo, metallic), lut)  # [N, 3]
        kd = albedo * (1.0 - metallic)
        if self.energy_compensated:
            kd = kd * (1.0 - spec_albedo)
        diffuse = kd * ctx.diffuse_light
        specular = _light(ctx.specular_light, roughness) * spec_albedo
        return {
            "rgb": diffuse + specular,
            "albedo": albedo,
            "metallic": metallic,
            "roughness": roughness,
            "diffuse": diffuse,
            "specular": specular,
            "reflectance": (kd + spec_albedo).amax(-1),
        }


def schlick_fresnel(f0: Tensor, cos_theta: Tensor) -> Tensor:
    """F = F0 + (1 - F0)(1 - cos)^5; cos in [0, 1]."""
    return f0 + (1.0 - f0) * (1.0 - cos_theta.clamp(0.0, 1.0)) ** 5


def refract(d: Tensor, n: Tensor, eta_ratio: Tensor) -> Tensor:
    """Snell refraction of unit incident direction d [N, 3] (towards the surface) at unit normal n
    (against d) with eta_ratio = eta_outside / eta_inside [N, 1]; total internal reflection gives
    the mirror direction. Returns unit directions [N, 3]."""
    cos_i = (-(n * d).sum(-1, keepdim=True)).clamp(0.0, 1.0)
    k = 1.0 - eta_ratio**2 * (1.0 - cos_i**2)
    t = eta_ratio * d + (eta_ratio * cos_i - k.clamp_min(0.0).sqrt()) * n
    mirror = d + 2.0 * cos_i * n
    t = torch.where(k > 0, t, mirror)
    return t / t.norm(dim=-1, keepdim=True).clamp_min(1e-8)


@HEADS.register("transmission")
class TransmissionHead(_Head):
    """Dielectric seen through (glass, clear plastic); an approximation, not a path tracer.

    Learned: index of refraction ior in [1, 2], tint in [0, 1]^3 (absorption color of the medium).
    Reflection: Schlick Fresnel F with F0 = ((ior - 1)/(ior + 1))^2 at cos = n.v, reflected light =
    ``specular_light`` (a mirror-like lobe). Transmission: the light that arrives along the refracted
    direction t: ``thin`` = a thin shell (both interfaces cancel, t = view direction), else a solid body
    where only the entry interface is modelled (t = Snell refraction at this point, the exit interface is
    ignored). The radiance along t is ``ctx.env_fn(t)`` when given (background/environment look-up),
    else approximated by ``diffuse_light`` (a blurred average of what lies behind).
    ``rgb = F specular_light + (1 - F) tint L(t)``, so the directional albedo F + (1 - F) tint <= 1.
    """

    n_params = 4
    view_dependent = True
    view_rank = 1

    def __init__(self, feature_dim: int, hidden: int = 64, layers: int = 2, thin: bool = False):
        super().__init__(feature_dim, hidden, layers, init_bias=[2.0, 2.0, 2.0, 0.0])
        self.thin = thin

    def forward(self, ctx: ShadingContext) -> dict[str, Tensor]:
        p = self.params01(ctx)
        tint, ior = p[:, :3], 1.0 + p[:, 3:4]
        f0 = ((ior - 1.0) / (ior + 1.0)) ** 2  # [N, 1]
        fresnel = schlick_fresnel(f0, ctx.n_dot_v[:, None])  # [N, 1]
        t_dir = ctx.view_dirs if self.thin else refract(ctx.view_dirs, ctx.normals, 1.0 / ior)
        behind = ctx.env_fn(t_dir) if ctx.env_fn is not None else ctx.diffuse_light
        reflected = fresnel * _light(ctx.specular_light, torch.zeros_like(ior))
        transmitted = (1.0 - fresnel) * tint * behind
        refl = (fresnel + (1.0 - fresnel) * tint).amax(-1)
        return {
            "rgb": reflected + transmitted,
            "tint": tint,
            "ior": ior,
            "fresnel": fresnel,
            "refracted_dir": t_dir,
            "reflectance": refl,
        }


@HEADS.register("subsurface")
class SubsurfaceHead(_Head):
    """Subsurface scattering by a wrap-lighting / diffusion-kernel approximation (skin, wax, marble).

    Learned: albedo in [0, 1]^3, scatter color s in [0, 1]^3 (tint of light that travelled inside),
    wrap w in [0, 1]. Wrap lighting widens the Lambert cosine kernel max(0, n.l) to
    max(0, (n.l + w)/(1 + w)); with only pre-integrated light available we approximate the wrapped
    irradiance by mixing the front irradiance E(n) with the two-sided mean 0.5 (E(n) + E(-n)) (the
    w -> 1 limit, light diffusing round to the back), the wrapped-in part tinted by s:
    ``rgb = albedo [(1 - w) E(n) + w s 0.5 (E(n) + E(-n))]``. E(-n) is ``ctx.back_light`` when given,
    else E(n) (then w only tints and softens). Directional albedo: albedo ((1 - w) + w s) <= 1.
    """

    n_params = 7
    view_rank = 2

    def __init__(self, feature_dim: int, hidden: int = 64, layers: int = 2):
        super().__init__(feature_dim, hidden, layers, init_bias=[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def forward(self, ctx: ShadingContext) -> dict[str, Tensor]:
        p = self.params01(ctx)
        albedo, scatter, wrap = p[:, :3], p[:, 3:6], p[:, 6:7]
        back = ctx.back_light if ctx.back_light is not None else ctx.diffuse_light
        wrapped = 0.5 * (ctx.diffuse_light + back)
        rgb = albedo * ((1.0 - wrap) * ctx.diffuse_light + wrap * scatter * wrapped)
        refl = (albedo * ((1.0 - wrap) + wrap * scatter)).amax(-1)
        return {"rgb": rgb, "albedo": albedo, "scatter": scatter, "wrap": wrap, "reflectance": refl}


def build_heads(
    names, feature_dim: int, hidden: int = 64, layers: int = 2, lut_table: Tensor | None = None
) -> nn.ModuleList:
    """One head per name (``HEADS`` names), in order; heads that ``uses_lut`` get ``lut_table``."""
    heads = []
    for name in names:
        cls = HEADS.get(name)
        kw = {"lut_table": lut_table} if cls.uses_lut else {}
        heads.append(cls(feature_dim, hidden, layers, **kw))
    return nn.ModuleList(heads)


def mix_heads(rgbs: Tensor, probs: Tensor) -> Tensor:
    """C = sum_k m_k R_k: rgbs [K, N, 3], probs [N, K] -> [N, 3]."""
    return torch.einsum("knc,nk->nc", rgbs, probs)


def mixture_reflectance(outputs: list[dict[str, Tensor]], probs: Tensor) -> Tensor:
    """sum_k m_k rho_k from each head output's "reflectance" [N]; probs [N, K] -> [N] (energy term)."""
    refl = torch.stack([o["reflectance"] for o in outputs], -1)  # [N, K]
    return (refl * probs).sum(-1)
