"""SDF surface model (NeuS): rays -> rgb, opacity, depth, normal and the terms the losses need.

Holds only networks (SDF, variance, color, background) and the occupancy grid; data, poses and
schedules live in the trainer. Everything runs in the normalised frame (object inside the unit sphere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.data.color_space import linear_to_srgb
from lumisurf.errors import ConfigError
from lumisurf.fields.background import BackgroundNeRF
from lumisurf.fields.base import build_sdf
from lumisurf.fields.variance import Variance
from lumisurf.models.deferred import deferred_foreground, deferred_nero_terms
from lumisurf.models.nero_terms import nero_ray_terms
from lumisurf.models.protocol import SceneModel
from lumisurf.models.traced_render import surface_first_foreground
from lumisurf.models.vertex_shading import field_vertex_shading
from lumisurf.renderers.image import render_rays
from lumisurf.renderers.volume import accumulate, neus_alpha, render_weights
from lumisurf.sampler_config import SurfaceRenderConfig, check_sampler
from lumisurf.samplers.occupancy import OccupancyGrid
from lumisurf.samplers.ray_samplers import (
    background_samples,
    contract_inverted_sphere,
    interval_dists,
    merge_samples,
    near_far_sphere,
    neus_upsample,
    section_weights,
    significant_samples,
    stratified_samples,
)
from lumisurf.shading.nero import NeroShading
from lumisurf.shading.neus_color import NeuSColor
from lumisurf.shading.segmented import SegmentedShading


@dataclass
class RenderState:
    """Per-step inputs that schedules change: cos-anneal ratio and whether samples are jittered."""

    cos_anneal_ratio: float = 1.0
    perturb: bool = False
    generator: torch.Generator | None = None
    surface: SurfaceRenderConfig | None = None  # eval renders: surface-first settings (None: full sampler)

    @property
    def surface_first(self) -> bool:
        """Whether a no-grad render takes the surface-first path (settings given and enabled)."""
        return self.surface is not None and self.surface.enabled


class Samples(NamedTuple):
    """A foreground's samples: sorted distances ``t`` [k, S] (interval starts), the samples that get the field
    with gradients ``keep`` [k, S] (None: all of them) and the no-grad field evaluations per ray spent placing
    them (``evals``)."""

    t: Tensor
    keep: Tensor | None
    evals: int


def _scatter(n: int, idx: Tensor, values: Tensor, fill: float = 0.0) -> Tensor:
    """Rows ``values`` [k, ...] placed at ``idx`` [k] of an [n, ...] tensor (differentiable)."""
    out = torch.full((n,) + tuple(values.shape[1:]), fill, dtype=values.dtype, device=values.device)
    return out.index_put((idx,), values)


class SurfaceModel(SceneModel):
    """The neural SDF field (``model.kind=field``); see :class:`lumisurf.models.protocol.SceneModel`."""

    kind = "field"
    data_parallel = True
    config_sections = ("model", "sampler", "loss", "optim", "schedule")

    def __init__(self, model_cfg, sampler_cfg, background_kind: str):
        super().__init__()
        self.sampler_cfg = sampler_cfg
        self.sdf = build_sdf(model_cfg.sdf)
        self.variance = Variance(model_cfg.init_variance)
        # shading: NeuS color MLP, or NeRO's reflective shading (then self.nero holds its config)
        # (soft material segmentation: K heads mixed by an assignment field, on NeRO's light model)
        segmented = model_cfg.assignment.enabled
        self.nero = model_cfg.nero if (model_cfg.shading == "nero" or segmented) else None
        if segmented:
            self.color = SegmentedShading(model_cfg, self.sdf.feature_dim)
        else:
            self.color = (
                NeroShading(model_cfg.nero, self.sdf.feature_dim)
                if self.nero is not None
                else NeuSColor(model_cfg.color, self.sdf.feature_dim)
            )
        self.segmented = segmented
        self.deferred = model_cfg.shade_at == "surface"
        if self.deferred and segmented:
            raise ConfigError("model.shade_at=surface shades one point a ray: it cannot mix model.assignment's heads")
        self.background_kind = background_kind
        self.background = BackgroundNeRF(model_cfg.background) if background_kind == "nerf++" else None
        self.n_bg_samples = model_cfg.background.n_samples
        self.occupancy = OccupancyGrid(sampler_cfg.occupancy_resolution) if sampler_cfg.occupancy else None
        check_sampler(sampler_cfg)

    # ------------------------------------------------------------------ the model protocol
    @property
    def has_stage1_materials(self) -> bool:
        return self.nero is not None

    @classmethod
    def config_has_stage1_materials(cls, cfg) -> bool:
        return cfg.model.shading == "nero" or cfg.model.assignment.enabled

    @torch.no_grad()
    def render_camera(self, cameras, cam, bg_color, state=None, chunk=1024, downscale=1) -> dict[str, Tensor]:
        o, d, h, w = cameras.pixel_rays(cam, downscale)
        out = render_rays(self, o, d, bg_color, state if state is not None else RenderState(), chunk)
        return {k: v.reshape(h, w, -1) for k, v in out.items()}

    def surface_function(self, cameras=None, resolution=256, progress=False):
        return self.sdf.sdf

    def vertex_shading(self, vertices, normals, chunk=8192) -> dict:
        return field_vertex_shading(self, vertices, chunk)  # normals from the SDF, not the mesh

    def param_groups(self, cfg) -> list[dict]:
        """Groups named as the phases' ``GROUPS`` (each with ``base_lr`` = ``cfg.optim.lr``): sdf, variance,
        background, color (NeuS color MLP or NeRO shading), and with segmentation assignment / heads / shading
        (the shared light model)."""
        named: dict[str, list] = {
            "sdf": list(self.sdf.parameters()),
            "variance": list(self.variance.parameters()),
            "background": [] if self.background is None else list(self.background.parameters()),
        }
        if self.segmented:
            named["assignment"] = list(self.color.assignment.parameters())
            named["heads"] = list(self.color.heads.parameters())
            named["shading"] = list(self.color.lights.parameters())
        else:
            named["color"] = list(self.color.parameters())
        lr = cfg.optim.lr
        return [{"name": k, "params": v, "lr": lr, "base_lr": lr} for k, v in named.items() if v]

    def occupied_cells(self) -> Tensor | None:
        occ = self.occupancy
        if occ is None or not bool(occ.initialized):
            return None
        return occ.cell_centers()[occ.occupied.reshape(-1)]

    # ------------------------------------------------------------------ what the trainer may ask
    @property
    def assignment(self):
        """The material assignment field of a segmented model, else None."""
        return self.color.assignment if self.segmented else None

    @property
    def solo_head(self) -> int | None:
        """Index of the head a segmented model renders alone (pre-training one head), else None."""
        return self.color.solo if self.segmented else None

    def set_solo_head(self, name: str | None) -> None:
        """Segmented models: render with head ``name`` alone (None: the mixture); no-op for other shading."""
        if self.segmented:
            self.color.solo = None if name is None else self.color.head_names.index(name)

    # ------------------------------------------------------------------ sampling
    def _field_sdf(self, o: Tensor, d: Tensor, t: Tensor) -> Tensor:
        """The field's SDF at the points ``o + t d`` of ``t`` [k, S] (no graph), [k, S]."""
        return self.sdf.sdf((o[:, None] + d[:, None] * t[..., None]).reshape(-1, 3)).reshape(t.shape)

    def _coarse_sdf(self, o: Tensor, d: Tensor, t: Tensor) -> tuple[Tensor, float | None]:
        """The SDF the first up-sampling step reads at the stratified ``t`` [k, S] and, when it is the occupancy
        grid's cache (training with ``coarse_sdf=occupancy``, after the grid's first refresh), the cache's error
        margin (its cell size; None for the field's own values)."""
        if self.training and self.sampler_cfg.coarse_sdf == "occupancy" and self.occupancy is not None:
            cached = self.occupancy.coarse_sdf((o[:, None] + d[:, None] * t[..., None]).reshape(-1, 3))
            if cached is not None:
                return cached.reshape(t.shape), self.occupancy.cell_size
        return self.sdf.sdf_proposal((o[:, None] + d[:, None] * t[..., None]).reshape(-1, 3)).reshape(t.shape), None

    def _selects_samples(self, need_grad_graph: bool) -> bool:
        """Whether this render gives the field (with gradients) only to the significant samples."""
        return need_grad_graph and self.training and self.sampler_cfg.render_samples == "significant"

    @torch.no_grad()
    def _sample_t(
        self, o: Tensor, d: Tensor, near: Tensor, far: Tensor, state: RenderState, select: bool = False
    ) -> Samples:
        """Stratified samples then NeuS hierarchical up-sampling (see :class:`Samples`).

        The last step's new samples are not evaluated (NeuS' ``last=True``): nothing reads their SDF. With
        ``select``, the section weights of the evaluated samples at the model's current sharpness decide which
        samples get the field with gradients (:func:`significant_samples`)."""
        cfg = self.sampler_cfg
        t = stratified_samples(near, far, cfg.n_samples, state.perturb, state.generator)
        if cfg.n_importance <= 0 or cfg.up_sample_steps <= 0:
            return Samples(t, None, 0)
        sdf, margin = self._coarse_sdf(o, d, t)
        evals = 0 if margin is not None else cfg.n_samples
        estimated = torch.full_like(t, margin is not None, dtype=torch.bool)  # [k, S] values from the cache
        per_step = cfg.n_importance // cfg.up_sample_steps
        for i in range(cfg.up_sample_steps - 1):
            new_t = neus_upsample(o, d, t, sdf, per_step, 64.0 * 2**i)
            new_sdf = self._field_sdf(o, d, new_t)
            evals += per_step
            t, order = merge_samples(t, new_t)
            sdf = torch.gather(torch.cat([sdf, new_sdf], -1), 1, order)
            estimated = torch.gather(torch.cat([estimated, torch.zeros_like(new_t, dtype=torch.bool)], -1), 1, order)
        t_all, _ = merge_samples(t, neus_upsample(o, d, t, sdf, per_step, 64.0 * 2 ** (cfg.up_sample_steps - 1)))
        keep = None
        if select:
            weights = section_weights(o, d, t, sdf, float(self.variance.inv_s()))
            unsure = None
            if margin is not None:  # a cached value within its error of the surface: its intervals stay
                near = estimated & (sdf.abs() < margin)
                unsure = near[:, :-1] | near[:, 1:]
            keep = significant_samples(t, weights, t_all, cfg.significant_threshold, also=unsure)
        return Samples(t_all, keep, evals)

    # ------------------------------------------------------------------ forward
    def forward(
        self, origins: Tensor, dirs: Tensor, bg_color: Tensor, state: RenderState, need_grad_graph: bool = True
    ) -> dict[str, Tensor]:
        """origins, dirs [n_rays, 3] (unit dirs), bg_color [n_rays, 3] used by a constant background.

        Returns rgb [n_rays,3], opacity [n_rays,1], depth [n_rays,1], normal [n_rays,3] (world, unit-ish);
        for the losses gradients [k,S,3] and inside [k,S] of the k rays that reached the surface band,
        inv_s [], samples_per_ray [] (field evaluations per ray, all rays counted) and, with finite-
        difference normals, laplacian [k*S].
        """
        n = origins.shape[0]
        near, far, hit = near_far_sphere(origins, dirs, 1.0)
        sphere_far = far  # the NeRF++ background starts where the ray leaves the unit sphere
        if self.occupancy is not None:
            near, far, hit = self.occupancy.ray_bounds(origins, dirs, near, far, self.sampler_cfg.occupancy_march_steps)
        idx = hit.nonzero()[:, 0]
        fg = self.render_foreground(origins[idx], dirs[idx], near[idx], far[idx], state, need_grad_graph)
        opacity = _scatter(n, idx, fg["opacity"])
        rgb = _scatter(n, idx, fg["rgb"])
        rgb = rgb + (1.0 - opacity) * self._background_behind(origins, dirs, sphere_far, bg_color, state, opacity)
        out = {
            "rgb": rgb,
            "opacity": opacity,
            "depth": _scatter(n, idx, fg["depth"]),
            "normal": _scatter(n, idx, fg["normal"]),
            "gradients": fg["gradients"],
            "inside": fg["inside"],
            "inv_s": fg["inv_s"],
            "samples_per_ray": torch.tensor(idx.numel() * fg["n_samples"] / max(n, 1)),
        }
        # NeRO shading: per-ray materials; in training, occlusion prediction/target at surface points [M, 1]
        out.update({key: _scatter(n, idx, fg[key]) for key in ("albedo", "metallic", "roughness") if key in fg})
        out.update({key: fg[key] for key in ("occ_pred", "occ_target", "reflectance") if key in fg})
        if "material_probs" in fg:  # segmentation: per-ray assignment [n, K] and per-head sRGB [n, K, 3]
            K = fg["material_probs"].shape[-1]
            out["material_probs"] = _scatter(n, idx, fg["material_probs"])
            out["head_rgb"] = _scatter(n, idx, fg["head_rgb"].reshape(-1, K * 3)).reshape(n, K, 3)
        if self.sdf.last_laplacian is not None:
            out["laplacian"], self.sdf.last_laplacian = self.sdf.last_laplacian, None
        if self.sdf.last_expert_loss is not None:  # gated experts: the cheap expert's distillation
            out["expert_loss"], self.sdf.last_expert_loss = self.sdf.last_expert_loss, None
        return out

    def render_foreground(
        self, o: Tensor, d: Tensor, near: Tensor, far: Tensor, state: RenderState, need_grad_graph: bool
    ) -> dict[str, Tensor]:
        """Volume-render the SDF along the k rays given (all tensors [k, ...]); in eval mode with
        ``state.surface`` set, surface-first (``models/traced_render.py``)."""
        if state.surface_first and not self.training and not need_grad_graph:
            return surface_first_foreground(self, o, d, near, far, state)
        samples = self._sample_t(o, d, near, far, state, select=self._selects_samples(need_grad_graph))
        extra = None  # with selected samples (all near the surface), free space keeps its eikonal term
        if samples.keep is not None and self.sampler_cfg.eikonal_points > 0 and o.shape[0] > 0:
            extra = self._eikonal_points(self.sampler_cfg.eikonal_points, o, state.generator)
        fg = self.render_at_samples(o, d, samples.t, far, state, need_grad_graph, samples.keep, extra)
        fg["n_samples"] += samples.evals
        return fg

    @staticmethod
    def _eikonal_points(n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        """n points [n, 3] uniform in the unit sphere."""
        u = torch.rand(n, 4, generator=generator, dtype=like.dtype, device=generator.device if generator else None)
        u = u.to(like.device)
        return F.normalize(u[:, :3] * 2.0 - 1.0, dim=-1) * u[:, 3:].pow(1.0 / 3.0)

    def render_at_samples(
        self,
        o: Tensor,
        d: Tensor,
        t: Tensor,
        far: Tensor,
        state: RenderState,
        need_grad_graph: bool,
        keep: Tensor | None = None,
        extra: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Shade and composite the samples ``t`` [k, S] (interval starts; the last interval ends at ``far``
        [k, 1]) of the k rays ``o``, ``d`` [k, 3]. Only the samples ``keep`` [k, S] (all when None) get the field;
        the others composite with zero opacity. ``extra`` points [P, 3] share the field's call (one kernel pass)
        for their gradients only. ``n_samples`` counts the field evaluations per ray; ``gradients`` [M + P, 3]
        and ``inside`` [M + P] are those of the M evaluated samples and the extra points."""
        dists, t_mid = interval_dists(t, far)
        pts = o[:, None] + d[:, None] * t_mid[..., None]  # [k, S, 3]
        k, n_s = t_mid.shape
        sel = None if keep is None else keep.reshape(-1).nonzero()[:, 0]  # [M] flat sample indices

        def pick(x: Tensor) -> Tensor:  # [k, S, C] -> [M, C]
            x = x.reshape(k * n_s, *x.shape[2:])
            return x if sel is None else x[sel]

        def dense(x: Tensor) -> Tensor:  # [M, ...] -> [k * S, ...], zero where not evaluated
            return x if sel is None else _scatter(k * n_s, sel, x)

        p, view = pick(pts), pick(d[:, None].expand(k, n_s, 3))
        m = p.shape[0]
        sdf, feat, grad_all = self.sdf.sdf_and_gradient(
            p if extra is None else torch.cat([p, extra]), create_graph=need_grad_graph
        )
        sdf, feat, grad = sdf[:m], feat[:m], grad_all[:m]
        shade = None if self.deferred else self.shade(p, grad, view, feat, pick(o[:, None].expand(k, n_s, 3)))
        inv_s = self.variance.inv_s()
        radius = p.norm(dim=-1)  # [M]
        alpha = neus_alpha(sdf, (view * grad).sum(-1), pick(dists[..., None])[:, 0], inv_s, state.cos_anneal_ratio)
        alpha = dense((alpha * (radius < 1.0).to(alpha))[:, None]).reshape(k, n_s)
        weights = render_weights(alpha)  # [k, S]
        inside = radius < 1.2 if extra is None else torch.cat([radius < 1.2, extra.norm(dim=-1) < 1.2])
        fg = {"gradients": grad_all, "inside": inside, "inv_s": inv_s, "n_samples": grad_all.shape[0] / max(k, 1)}
        grad = dense(grad).reshape(k, n_s, 3)
        fg.update(opacity=accumulate(weights), depth=accumulate(weights, t_mid[..., None]))
        fg["normal"] = accumulate(weights, F.normalize(grad, dim=-1))
        if self.deferred:
            feat = dense(feat).reshape(k, n_s, feat.shape[-1])
            shade, x, fg["rgb"] = deferred_foreground(self.shade, weights, pts, grad, feat, o, d)
            if self.nero is not None:
                fg.update(
                    deferred_nero_terms(
                        shade, fg["opacity"], x, fg["normal"], *self._nero_args(d, inv_s, need_grad_graph, state)
                    )
                )
            return fg
        if sel is not None:  # per-sample shading densified; 'reflectance' stays per evaluated sample (a loss term)
            shade = {key: (v if key == "reflectance" else dense(v)) for key, v in shade.items()}
        fg["rgb"] = accumulate(weights, shade["rgb"].reshape(k, n_s, 3))
        if self.nero is not None:
            fg.update(nero_ray_terms(shade, weights, pts, grad, *self._nero_args(d, inv_s, need_grad_graph, state)))
        if self.segmented:
            K = shade["probs"].shape[-1]
            fg["material_probs"] = accumulate(weights, shade["probs"].reshape(k, n_s, K))
            # each head's own image, composited with detached weights: fitting it (EM residuals, the
            # head_fit loss) trains that head only, never the geometry
            head = accumulate(weights.detach(), shade["head_rgb"].reshape(k, n_s, K * 3)).reshape(k, K, 3)
            fg["head_rgb"] = linear_to_srgb(head).clamp(0.0, 1.0)
            fg["reflectance"] = shade["reflectance"]  # [k * S] per sample
        return fg

    def _nero_args(self, d: Tensor, inv_s: Tensor, need_grad_graph: bool, state: RenderState) -> tuple:
        """The trailing arguments of NeRO's per-ray terms; a refreshed occupancy grid's lookup lets the occlusion
        march evaluate the SDF only in its cells."""
        occ = self.occupancy
        occupied = occ.lookup if occ is not None and bool(occ.initialized) else None
        return d, inv_s, self.nero, self.sdf.sdf, occupied, need_grad_graph, state.generator

    def shade(self, pts: Tensor, grad: Tensor, view: Tensor, feat: Tensor, cam: Tensor) -> dict[str, Tensor]:
        """Shading of flat samples [P, ...] -> dict with rgb [P, 3] (NeRO adds its material/light terms)."""
        if self.nero is None:
            return {"rgb": self.color(pts, grad, view, feat)}
        return self.color(pts, grad, view, feat, cam_origins=cam)

    def _background_behind(
        self, o: Tensor, d: Tensor, far: Tensor, bg_color: Tensor, state: RenderState, opacity: Tensor
    ) -> Tensor:
        """The background [n, 3]; surface-first renders (``state.surface``, no grad) skip the rays the foreground
        covers (1 - opacity < 1e-4: the skipped term is below 1e-4 of the pixel), others evaluate every ray."""
        if self.background is None or torch.is_grad_enabled() or not state.surface_first:
            return self._background(o, d, far, bg_color, state)
        seen = ((1.0 - opacity[:, 0]) >= 1e-4).nonzero()[:, 0]
        out = torch.zeros_like(o)
        for part in seen.split(8192):  # surface-first chunks are large: bound the [rays, B] background samples
            out[part] = self._background(o[part], d[part], far[part], bg_color[part], state)
        return out

    def _background(self, o: Tensor, d: Tensor, far: Tensor, bg_color: Tensor, state: RenderState) -> Tensor:
        if self.background is None:
            return bg_color
        t = background_samples(far, self.n_bg_samples, state.perturb, state.generator)  # [n_rays, B]
        dists, t_mid = interval_dists(t, t[:, -1:], last=1e10)
        x = o[:, None] + d[:, None] * t_mid[..., None]
        sigma, rgb = self.background(contract_inverted_sphere(x).reshape(-1, 4), d[:, None].expand_as(x).reshape(-1, 3))
        alpha = 1.0 - torch.exp(-sigma.reshape(t.shape) * dists)
        return accumulate(render_weights(alpha), rgb.reshape(*t.shape, 3))
