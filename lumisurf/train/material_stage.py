"""Stage II (``lumisurf material RUN``): fit materials and lighting on the frozen Stage I mesh.

Every training pixel whose camera ray hits the mesh (ray traced once, up front) becomes a shading
sample; a step shades a random batch of them by Monte Carlo (``shading/monte_carlo.py``) with
visibility traced against the mesh, and fits the material field and the lighting to the sRGB pixels.
Outputs go to ``RUN/material/``: ``material.pt`` (field + lighting), ``config.yaml`` (the Stage II
config used), ``scalars.csv``, ``env_map.hdr`` (the lighting), ``preview.png`` and ``export/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from lumisurf.config import MaterialStageConfig
from lumisurf.data.color_space import linear_to_srgb, srgb_to_linear
from lumisurf.data.images import as_float
from lumisurf.data.scene import Split
from lumisurf.losses.photometric import decorrelated_l2, rgb_loss
from lumisurf.renderers.mesh_tracer import MeshTracer
from lumisurf.shading.envmap import EnvImportanceSampler
from lumisurf.shading.lighting import Lighting
from lumisurf.shading.monte_carlo import Strategy, shade
from lumisurf.train.logging import ScalarLogger
from lumisurf.train.material_priors import env_priors, material_priors


@dataclass
class SurfaceHits:
    """Training pixels whose centre ray hits the mesh (normalised frame)."""

    points: Tensor  # [M, 3]
    normals: Tensor  # [M, 3] unit, facing the camera
    wo: Tensor  # [M, 3] unit, surface -> camera
    rgb: Tensor  # [M, 3] target sRGB (straight color)
    segment: Tensor | None = None  # [M] int64 material segment of each hit (segmented Stage I runs)

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


def material_smoothness(field, x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
    """Mean |m(x) - m(x + eps * noise)| over albedo, metallic and roughness."""
    jitter = torch.randn(x.shape, generator=generator, device="cpu").to(x) * eps
    a, b = field(x), field(x + jitter)
    return sum((a[k] - b[k]).abs().mean() for k in ("albedo", "metallic", "roughness")) / 3.0


class MaterialTrainer:
    """Adam on the material field (lr), the environment map (``env_lr``, default ``cfg.env_lr``; a map baked
    from Stage I passes ``cfg.baked_env_lr``) and a learned indirect light (``cfg.env_lr``); one step = one
    batch of surface pixels."""

    def __init__(
        self,
        field,
        lighting: Lighting,
        tracer: MeshTracer,
        hits: SurfaceHits,
        cfg: MaterialStageConfig,
        seed: int = 0,
        env_lr: float | None = None,
    ):
        self.field, self.lighting, self.tracer, self.hits, self.cfg = field, lighting, tracer, hits, cfg
        groups = [{"params": list(field.parameters()), "lr": cfg.lr}]
        env_params = [p for p in lighting.env.parameters() if p.requires_grad]
        env_lr = cfg.env_lr if env_lr is None else env_lr
        for p in env_params:  # a kept map needs no gradient (and no prior)
            p.requires_grad_(env_lr > 0)
        if env_params and env_lr > 0:
            groups.append({"params": env_params, "lr": env_lr})
        if isinstance(lighting.indirect, torch.nn.Module):
            groups.append({"params": list(lighting.indirect.parameters()), "lr": cfg.env_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.generator = torch.Generator().manual_seed(seed)
        # one-sample mixture: GGX lobe, cosine lobe and the environment's own luminance (its sampler is
        # rebuilt from the current map every env_sampler_every steps; a known map never changes)
        self.strategy = Strategy(
            ggx=cfg.specular_fraction, cosine=1.0 - cfg.specular_fraction, env=cfg.env_sample_fraction
        )
        self.env_sampler = None
        self.step = 0

    def _refresh_env_sampler(self) -> None:
        every = self.cfg.env_sampler_every
        if self.cfg.env_sample_fraction <= 0 or (self.env_sampler is not None and self.step % every):
            return
        with torch.no_grad():
            self.env_sampler = EnvImportanceSampler(self.lighting.env.image().float().cpu())

    def occluded(self, origins: Tensor, dirs: Tensor) -> Tensor:
        return self.tracer.occluded(origins, dirs)

    def train_step(self) -> dict[str, float]:
        cfg, hits = self.cfg, self.hits
        idx = torch.randint(0, len(hits), (cfg.batch_rays,), generator=self.generator).to(hits.points.device)
        x, n, wo, target = hits.points[idx], hits.normals[idx], hits.wo[idx], hits.rgb[idx]
        self._refresh_env_sampler()
        mat = self.field(x)
        pred, loss_rgb = self._photometric(x, n, wo, mat, target)
        loss = loss_rgb
        scalars = {"loss_rgb": loss_rgb.item()}
        if cfg.smooth_weight > 0:
            loss_s = material_smoothness(self.field, x, cfg.smooth_eps, self.generator)
            loss = loss + cfg.smooth_weight * loss_s
            scalars["loss_smooth"] = loss_s.item()
        segment = None if hits.segment is None else hits.segment[idx]
        for name, term in {**material_priors(mat, cfg, segment), **env_priors(self.lighting.env, cfg)}.items():
            loss = loss + term
            scalars[f"loss_{name}"] = term.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        mse = torch.mean((pred.detach() - target) ** 2).clamp_min(1e-10)
        scalars.update(
            loss=loss.item(),
            psnr=float(-10 * torch.log10(mse)),
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

    def fit(self, logger: ScalarLogger | None = None, progress: bool = True) -> dict[str, float]:
        cfg = self.cfg
        budget = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
        bar = tqdm(total=cfg.steps, disable=not progress, dynamic_ncols=True, desc="material", unit="it")
        start = time.perf_counter()
        scalars: dict[str, float] = {}
        while self.step < cfg.steps:
            scalars = self.train_step()
            self.step += 1
            bar.update(1)
            if self.step % 10 == 0 or self.step == 1:
                elapsed = time.perf_counter() - start
                if logger is not None:
                    logger.log(self.step, {**scalars, "seconds": elapsed})
                bar.set_postfix(
                    loss=f"{scalars['loss']:.4f}",
                    psnr=f"{scalars['psnr']:.2f}",
                    rough=f"{scalars['roughness']:.2f}",
                    metal=f"{scalars['metallic']:.2f}",
                )
            if budget is not None and time.perf_counter() - start >= budget:
                break
        bar.close()
        return {**scalars, "steps": self.step, "seconds": time.perf_counter() - start}


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
