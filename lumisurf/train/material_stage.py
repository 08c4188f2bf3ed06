"""Stage II (``lumisurf material RUN``): fit materials and lighting on the frozen Stage I mesh.

Every training pixel whose camera ray hits the mesh (ray traced once, up front) becomes a shading
sample; a step shades a random batch of them by Monte Carlo (``shading/monte_carlo.py``) with
visibility traced against the mesh, and fits the material field and the lighting to the sRGB pixels.
Outputs go to ``RUN/material/``: ``material.pt`` (field + lighting), ``config.yaml`` (the Stage II
config used), ``scalars.csv``, ``ckpt/last.pt`` (the loop's checkpoint: ``lumisurf material RUN --resume``),
``env_map.hdr`` (the lighting), ``preview.png`` and ``export/``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from lumisurf.config import Config
from lumisurf.data.color_space import linear_to_srgb, srgb_to_linear
from lumisurf.data.images import as_float
from lumisurf.data.scene import Split
from lumisurf.losses.photometric import decorrelated_l2, psnr_from_mse, rgb_loss
from lumisurf.renderers.mesh_tracer import MeshTracer
from lumisurf.shading.envmap import EnvImportanceSampler
from lumisurf.shading.lighting import Lighting
from lumisurf.shading.monte_carlo import Strategy, shade
from lumisurf.train.guard import DivergenceGuard
from lumisurf.train.loop import LoopFiles, TrainingLoop, require_finite
from lumisurf.train.material_priors import env_priors, material_priors, tangent_jitter
from lumisurf.train.progress import TrainingClock
from lumisurf.train_config import TrainConfig


@dataclass
class SurfaceHits:
    """Training pixels whose centre ray hits the mesh (normalised frame)."""

    points: Tensor  # [M, 3]
    normals: Tensor  # [M, 3] unit, facing the camera
    wo: Tensor  # [M, 3] unit, surface -> camera
    rgb: Tensor  # [M, 3] target sRGB (straight color)
    segment: Tensor | None = None  # [M] int64 material segment of each hit (segmented Stage I runs)
    stage1_metallic: Tensor | None = None  # [M] Stage I's metallic at each hit (runs with material heads)

    def __len__(self) -> int:
        return self.points.shape[0]


def trace_split(tracer: MeshTracer, split: Split, mask_threshold: float = 0.5, min_cos: float = 0.05) -> SurfaceHits:
    """Trace every pixel centre of every view of ``split``; keep hits inside the mask (when there is one)
    whose shading normal faces the camera (cosine > ``min_cos``)."""
    keep: dict[str, list[Tensor]] = {"points": [], "normals": [], "wo": [], "rgb": []}
    for cam in range(len(split)):
        o, d, h, w = split.cameras.pixel_rays(cam)
        hits = tracer.intersect(o, d)
        ok = hits.hit & ((hits.normals * -d).sum(-1) > min_cos)  # grazing silhouette hits are unreliable
        if split.masks is not None:
            ok = ok & (split.masks[cam].reshape(-1).to(ok.device) > mask_threshold)
        keep["points"].append(hits.points[ok])
        keep["normals"].append(hits.normals[ok])
        keep["wo"].append(-d[ok])
        keep["rgb"].append(as_float(split.images[cam].reshape(-1, 3)[ok.cpu()]).to(o.device))
    return SurfaceHits(**{k: torch.cat(v) for k, v in keep.items()})


def material_smoothness(
    field, x: Tensor, eps: float, generator: torch.Generator, normals: Tensor | None = None
) -> Tensor:
    """Mean |m(x) - m(x + eps * noise)| over albedo, metallic and roughness; with ``normals`` [N, 3] the noise
    lies in the tangent plane."""
    if normals is None:
        jitter = torch.randn(x.shape, generator=generator, device="cpu").to(x) * eps
    else:
        jitter = tangent_jitter(normals, eps, generator)
    a, b = field(x), field(x + jitter)
    return sum((a[k] - b[k]).abs().mean() for k in ("albedo", "metallic", "roughness")) / 3.0


class MaterialStage(torch.nn.Module):
    """What Stage II fits: the material field and the lighting (what the guard snapshots and the checkpoint
    saves)."""

    def __init__(self, field: torch.nn.Module, lighting: Lighting):
        super().__init__()
        self.field, self.lighting = field, lighting


def material_loop_config(cfg: Config) -> TrainConfig:
    """The loop settings of Stage II: Stage I's guard and checkpoint intervals, no validation pictures."""
    m = cfg.material
    return replace(cfg.train, max_steps=m.steps, max_minutes=m.max_minutes, val_every=0)


class MaterialTrainer(TrainingLoop):
    """Adam on the material field (lr), the environment map (``env_lr``, default ``cfg.material.env_lr``; a
    map baked from Stage I passes ``baked_env_lr``) and a learned indirect light (``cfg.material.env_lr``);
    one step = one batch of surface pixels. A client of the one training loop (``train/loop.py``): budget
    clock, divergence guard, checkpoints in ``files`` and resume."""

    loop_desc = "material"

    def __init__(
        self,
        field,
        lighting: Lighting,
        tracer: MeshTracer,
        hits: SurfaceHits,
        cfg: Config,
        files: LoopFiles,
        env_lr: float | None = None,
        progress: bool = True,
    ):
        m = cfg.material
        self.field, self.lighting, self.tracer, self.hits, self.cfg = field, lighting, tracer, hits, m
        self.model = MaterialStage(field, lighting)
        self.loop_cfg, self.files, self.progress = material_loop_config(cfg), files, progress
        self.clock = TrainingClock.from_config(self.loop_cfg)
        self.guard = DivergenceGuard(self.loop_cfg.guard)
        self.device = hits.points.device
        groups = [{"params": list(field.parameters()), "lr": m.lr}]
        env_params = [p for p in lighting.env.parameters() if p.requires_grad]
        env_lr = m.env_lr if env_lr is None else env_lr
        for p in env_params:  # a kept map needs no gradient (and no prior)
            p.requires_grad_(env_lr > 0)
        if env_params and env_lr > 0:
            groups.append({"params": env_params, "lr": env_lr})
        if isinstance(lighting.indirect, torch.nn.Module):
            groups.append({"params": list(lighting.indirect.parameters()), "lr": m.env_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.base_lr = [g["lr"] for g in self.optimizer.param_groups]  # what set_lr_scale scales
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        # one-sample mixture: GGX lobe, cosine lobe and the environment's own luminance (its sampler is
        # rebuilt from the current map every env_sampler_every steps; a known map never changes)
        self.strategy = Strategy(m.specular_fraction, 1.0 - m.specular_fraction, m.env_sample_fraction, m.stratified)
        self.env_sampler = None
        self.env_sampler_image: Tensor | None = None  # [H, W, 3] the map the sampler was built from (CPU)
        # [H, W, 3] the log map the fit starts from, what ``env_tether_weight`` holds a learned light to
        self.env_anchor = lighting.env.log_image().detach().clone() if m.env_tether_weight > 0 else None
        self.step, self.elapsed = 0, 0.0

    def update_schedules(self) -> None:
        self._refresh_env_sampler()

    def set_lr_scale(self, scale: float) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.base_lr):
            group["lr"] = lr * scale

    def extra_state(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "env_sampler_image": self.env_sampler_image,
            "env_anchor": self.env_anchor,
        }

    def load_extra_state(self, extra: dict) -> None:
        self.generator.set_state(extra["generator"])
        self.env_sampler_image = extra.get("env_sampler_image")  # the sampler the fit was using
        self.env_anchor = extra.get("env_anchor", self.env_anchor)  # the start of the fit, not of the resume
        self.env_sampler = None if self.env_sampler_image is None else EnvImportanceSampler(self.env_sampler_image)

    def restore_snapshot_extra(self, extra: dict) -> None:
        self.env_sampler = self.env_sampler_image = None  # the map went back with the weights: a new sampler

    def postfix(self, scalars: dict) -> dict:
        return {
            "loss": f"{scalars['loss']:.4f}",
            "psnr": f"{scalars['psnr']:.2f}",
            "rough": f"{scalars['roughness']:.2f}",
            "metal": f"{scalars['metallic']:.2f}",
        }

    def _refresh_env_sampler(self) -> None:
        every = self.cfg.env_sampler_every
        if self.cfg.env_sample_fraction <= 0 or (self.env_sampler is not None and self.step % every):
            return
        with torch.no_grad():
            self.env_sampler_image = self.lighting.env.image().float().cpu()
        self.env_sampler = EnvImportanceSampler(self.env_sampler_image)

    def occluded(self, origins: Tensor, dirs: Tensor) -> Tensor:
        return self.tracer.occluded(origins, dirs)

    def train_step(self) -> dict[str, float]:
        cfg, hits = self.cfg, self.hits
        idx = torch.randint(0, len(hits), (cfg.batch_rays,), generator=self.generator).to(hits.points.device)
        x, n, wo, target = hits.points[idx], hits.normals[idx], hits.wo[idx], hits.rgb[idx]
        mat = self.field(x)
        pred, loss_rgb = self._photometric(x, n, wo, mat, target)
        loss = loss_rgb
        scalars = {"loss_rgb": loss_rgb.item()}
        if cfg.smooth_weight > 0:
            loss_s = material_smoothness(
                self.field, x, cfg.smooth_eps, self.generator, n if cfg.smooth_tangent else None
            )
            loss = loss + cfg.smooth_weight * loss_s
            scalars["loss_smooth"] = loss_s.item()
        segment = None if hits.segment is None else hits.segment[idx]
        metal1 = None if hits.stage1_metallic is None else hits.stage1_metallic[idx]
        progress = self.clock.progress(self.step, self.elapsed)
        priors = {
            **material_priors(mat, cfg, segment, progress, metal1),
            **env_priors(self.lighting.env, cfg, self.env_anchor),
        }
        for name, term in priors.items():
            loss = loss + term
            scalars[f"loss_{name}"] = term.item()
        require_finite(loss, scalars)  # never step on a NaN
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        mse = torch.mean((pred.detach().clamp(0, 1) - target) ** 2)
        scalars.update(
            loss=loss.item(),
            psnr=psnr_from_mse(mse).item(),
            roughness=mat["roughness"].mean().item(),
            metallic=mat["metallic"].mean().item(),
        )
        return scalars

    def _shade(self, x: Tensor, n: Tensor, wo: Tensor, mat: dict[str, Tensor], samples: int) -> Tensor:
        """sRGB [B, 3] of one Monte-Carlo estimate with ``samples`` light directions per pixel."""
        return linear_to_srgb(
            shade(
                x,
                n,
                wo,
                mat["albedo"],
                mat["metallic"],
                mat["roughness"],
                self.lighting.radiance,
                self.occluded,
                samples,
                self.strategy,
                self.generator,
                self.env_sampler,
            )
        )

    def _photometric(self, x: Tensor, n: Tensor, wo: Tensor, mat: dict[str, Tensor], target: Tensor):
        """(prediction [B, 3], loss): ``decorrelated`` shades twice with half the samples each."""
        cfg = self.cfg
        if cfg.loss != "decorrelated":
            pred = self._shade(x, n, wo, mat, cfg.light_samples)
            return pred, rgb_loss(pred, target, cfg.loss)
        half = max(cfg.light_samples // 2, 1)
        a, b = self._shade(x, n, wo, mat, half), self._shade(x, n, wo, mat, half)
        return 0.5 * (a + b), decorrelated_l2(a, b, target)


def initial_env_level(hits: SurfaceHits) -> float:
    """A learned environment starts grey at twice the mean linear intensity of the object's pixels."""
    return float(2.0 * srgb_to_linear(hits.rgb).mean().clamp_min(0.05))


def save_material_state(path: Path, field, lighting: Lighting, summary: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "field": field.state_dict(),
            "lighting": lighting.state_dict(),
            "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))},
        },
        path,
    )
