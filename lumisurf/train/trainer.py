"""Stage I trainer: ray batches -> model -> losses -> Adam, with schedules, checkpoints and logging."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from lumisurf.config import Config
from lumisurf.errors import ConfigError
from lumisurf.data.load import background_color, composite, load_config_scene
from lumisurf.data.pixel_samplers import build_pixel_sampler
from lumisurf.data.scene import SceneData
from lumisurf.losses.geometry import curvature_loss, eikonal_loss, mask_loss
from lumisurf.losses.occlusion import occlusion_loss
from lumisurf.losses.photometric import psnr_from_mse, rgb_loss
from lumisurf.losses.regularizers import grid_tv_loss
from lumisurf.losses.s3im import s3im_loss
from lumisurf.losses.segmentation import head_fit_loss
from lumisurf.models.surface import RenderState, SurfaceModel
from lumisurf.train.checkpoint import load_checkpoint, save_checkpoint
from lumisurf.train.logging import ScalarLogger
from lumisurf.train.run_dir import RunDir
from lumisurf.train.material_lift import LiftTargets, lift_materials
from lumisurf.train.phases import PhaseSchedule, named_param_groups, phases_from_config
from lumisurf.train.segmentation_step import segmentation_losses, warm_start_loss, warm_start_maps
from lumisurf.train.schedules import CosAnnealSchedule, FDStepSchedule, LevelSchedule, WarmupCosineLR
from lumisurf.train.visualize import save_validation_image


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    return torch.device(name)


def background_kind(cfg: Config, scene: SceneData) -> str:
    kind = cfg.model.background.kind
    if kind == "auto":
        return "constant" if scene.split("train").masks is not None else "nerf++"
    return kind


def build_model(cfg: Config, scene: SceneData) -> SurfaceModel:
    return SurfaceModel(cfg.model, cfg.sampler, background_kind(cfg, scene))


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    final_psnr: float


class Trainer:
    def __init__(self, cfg: Config, run: RunDir, scene: SceneData | None = None, progress: bool = True):
        self.cfg, self.run, self.progress = cfg, run, progress
        self.device = resolve_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        self.scene = scene if scene is not None else load_config_scene(cfg.data)
        self.scene.normalization.save(run.norm_path)
        self.train_split = self.scene.split("train")
        self.cameras = self.train_split.cameras.to(self.device)
        self.sampler = build_pixel_sampler(cfg.sampler, self.train_split, self.device)
        self.model = build_model(cfg, self.scene).to(self.device)
        self.optimizer = torch.optim.Adam(named_param_groups(self.model, cfg.optim.lr),
                                          weight_decay=cfg.optim.weight_decay)
        phases = phases_from_config(cfg.schedule)
        self.phases = None if phases is None else PhaseSchedule(phases, cfg.train.max_steps)
        self.lr_schedule = WarmupCosineLR(self.optimizer, cfg.optim.warmup_steps, cfg.train.max_steps,
                                          cfg.optim.lr_min_factor)
        self.anneal = CosAnnealSchedule(cfg.train.anneal_end)
        grid = getattr(self.model.sdf, "grid", None)
        sc = cfg.schedule
        self.levels = LevelSchedule(sc.grid_start_levels, sc.grid_steps_per_level,
                                    grid.n_levels if grid is not None else 0)
        self.fd_step = FDStepSchedule(sc.fd_eps_mode, sc.fd_eps_start, sc.fd_eps_end, cfg.train.max_steps,
                                      grid.resolutions if grid is not None else None)
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.step, self.elapsed = 0, 0.0
        self.occupied_fraction = 1.0
        self.has_masks = self.train_split.masks is not None
        self.warm_maps = warm_start_maps(cfg, self.train_split)  # 2D material maps [n, H, W, K] or None
        self.lift: LiftTargets | None = None  # init=materials: lifted Stage I clusters (from phase C)
        if self._lift_pending() and self.phases is None:
            raise ConfigError("model.assignment.init=materials lifts at the start of phase C: "
                              "set schedule.phases=abcde")

    # ------------------------------------------------------------------ schedules
    def _rescale_schedules(self, total_steps: int) -> None:
        """Fit warm-up, cos-anneal and lr decay into the steps a wall-clock budget allows."""
        frac = min(1.0, total_steps / self.cfg.train.max_steps)
        self.lr_schedule.total = max(1, total_steps)
        self.lr_schedule.warmup = int(self.cfg.optim.warmup_steps * frac)
        self.anneal.anneal_end = int(self.cfg.train.anneal_end * frac)
        per_level = self.cfg.schedule.grid_steps_per_level
        self.levels.every = max(1, int(per_level * frac)) if per_level > 0 else 0
        self.fd_step.total = max(1, total_steps)
        if self.phases is not None:
            self.phases.total_steps = max(1, total_steps)

    def rescale_to_budget(self, budget_seconds: float) -> int:
        """Fit the schedules into the steps a training-time budget allows, at the rate measured so far
        (``self.step`` steps in ``self.elapsed`` s; call after ~10 steps). Returns that total (<= max_steps)."""
        rate = self.step / max(self.elapsed, 1e-6)
        total = min(self.cfg.train.max_steps, int(rate * budget_seconds))
        self._rescale_schedules(total)
        return total

    def _active(self, loss: str) -> bool:
        """Whether a loss term is on at this step (always, without a phase schedule)."""
        return self.phases is None or self.phases.current.is_active(loss)

    def _update_schedules(self) -> None:
        factor = self.lr_schedule.update(self.step)
        if self.phases is not None:  # phase E is Stage II: steps past the budget's estimate stay in D
            phase = self.phases.apply(self.optimizer.param_groups, min(self.step, self.phases.total_steps - 1), factor)
            solo = self.cfg.model.assignment.pretrain_head
            if self.model.segmented and solo is not None:  # one head alone until the assignment trains
                shading = self.model.color
                shading.solo = None if "assignment" in phase.trainable else shading.head_names.index(solo)
            if self.model.segmented and "assignment" in phase.trainable and self._lift_pending():
                self._lift()
        self.anneal.update(self.step)
        levels = self.levels.update(self.step) if self.levels.n_levels > 0 else None
        self.model.sdf.set_progress(self.step, active_levels=levels, fd_eps=self.fd_step.update(self.step, levels))
        occ = self.model.occupancy
        if occ is not None and self.step % self.cfg.sampler.occupancy_every == 0:
            self.occupied_fraction = occ.update(self.model.sdf.sdf, self.model.variance.inv_s().item())

    def _lift_pending(self) -> bool:
        return self.cfg.model.assignment.init == "materials" and self.lift is None

    def _lift(self) -> None:
        """Cluster the pretrain head's materials and fit the assignment to them (``train/material_lift.py``)."""
        a = self.cfg.model.assignment
        self.lift = lift_materials(self.model, self.cameras, self.train_split.masks, a.pretrain_head, a.lift,
                                   self.generator)
        tqdm.write(f"step {self.step}: lifted Stage I materials at {self.lift.points.shape[0]} surface points; "
                   f"cluster centres (albedo rgb, metallic, roughness) per head {list(a.heads)}: "
                   f"{self.lift.centres.numpy().round(2).tolist()}, separation {self.lift.separation:.2f}")

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        batch = self.sampler.sample(cfg.train.batch_rays, self.generator)
        o, d = self.cameras.rays(batch.cam_idx, batch.px, batch.py)
        bg = background_color(cfg.data.background, o.shape[0], self.generator, self.device)
        target = composite(batch.rgb, batch.mask, bg)
        state = RenderState(self.anneal.value, cfg.sampler.perturb, self.generator)
        out = self.model(o, d, bg, state)
        loss_rgb = rgb_loss(out["rgb"], target, cfg.loss.rgb, weight=batch.weight, delta=cfg.loss.huber_delta)
        inside = out["inside"].to(out["gradients"].dtype)
        loss_eik = eikonal_loss(out["gradients"], inside)
        loss = cfg.loss.rgb_weight * loss_rgb + cfg.loss.eikonal_weight * loss_eik
        scalars = {"loss_rgb": loss_rgb.item(), "loss_eikonal": loss_eik.item(),
                   "samples_per_ray": float(out["samples_per_ray"])}
        if cfg.loss.s3im_weight > 0:
            lc = cfg.loss
            loss_s = s3im_loss(out["rgb"], target, lc.s3im_kernel, lc.s3im_stride, lc.s3im_repeats,
                               lc.s3im_patch_height, generator=self.generator)
            loss = loss + lc.s3im_weight * loss_s
            scalars["loss_s3im"] = loss_s.item()
        if cfg.loss.curvature_weight > 0 and out.get("laplacian") is not None:
            loss_c = curvature_loss(out["laplacian"])
            loss = loss + cfg.loss.curvature_weight * loss_c
            scalars["loss_curvature"] = loss_c.item()
        if cfg.loss.grid_tv_weight > 0 and hasattr(self.model.sdf, "grid") and self._active("grid_tv"):
            loss_tv = grid_tv_loss(self.model.sdf.grid)
            loss = loss + cfg.loss.grid_tv_weight * loss_tv
            scalars["loss_grid_tv"] = loss_tv.item()
        if self.has_masks and cfg.loss.mask_weight > 0:
            loss_m = mask_loss(out["opacity"], batch.mask)
            loss = loss + cfg.loss.mask_weight * loss_m
            scalars["loss_mask"] = loss_m.item()
        if cfg.loss.occlusion_weight > 0 and "occ_pred" in out:  # NeRO shading
            loss_o = occlusion_loss(out["occ_pred"], out["occ_target"])
            loss = loss + cfg.loss.occlusion_weight * loss_o
            scalars["loss_occ"] = loss_o.item()
        if self.model.segmented:
            loss = loss + self._segmentation_terms(out, batch, o, d, target, bg, state, scalars)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            mse = torch.mean((out["rgb"].clamp(0, 1) - target) ** 2)
            per_ray_l1 = (out["rgb"].detach() - target).abs().mean(dim=-1)  # [n_rays]
        self.sampler.update(batch, per_ray_l1, self.step)
        scalars.update(loss=loss.item(), psnr=psnr_from_mse(mse).item(), inv_s=out["inv_s"].item(),
                       lr=self.optimizer.param_groups[0]["lr"], occupied=self.occupied_fraction)
        return scalars

    def _segmentation_terms(self, out, batch, o, d, target, bg, state, scalars: dict) -> torch.Tensor:
        seg = self.cfg.loss.segmentation
        render = lambda o2, d2: self.model(o2, d2, bg[: o2.shape[0]], state, need_grad_graph=False)  # noqa: E731
        terms = segmentation_losses(self.model, out, o, d, target, self.cameras, seg, self._active, render,
                                    self.generator)
        if self.warm_maps is not None and seg.warm_start_weight > 0 and self._active("warm_start"):
            terms["warm_start"] = warm_start_loss(out, self.warm_maps, batch.cam_idx, batch.px, batch.py)
        if self.lift is not None and seg.lift_weight > 0 and self._active("lift"):
            terms["lift"] = self.lift.loss(self.model.color.assignment, o.shape[0], self.generator)
        if self.model.color.solo is not None and seg.head_fit_weight > 0:
            terms["head_fit"] = head_fit_loss(out["head_rgb"], out["opacity"], target, self.model.color.solo)
        total = torch.zeros((), device=o.device)
        for name, value in terms.items():
            total = total + getattr(seg, f"{name}_weight") * value
            scalars[f"loss_{name}"] = value.item()
        return total

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False) -> TrainResult:
        cfg = self.cfg
        if resume:
            self.step, self.elapsed = load_checkpoint(self.run.ckpt_path, self.model, self.optimizer, self.device)
        logger = ScalarLogger(self.run.scalars_path, self.run.root / "tb", append=resume)
        budget = None if cfg.train.max_minutes is None else cfg.train.max_minutes * 60.0
        total = cfg.train.max_steps
        bar = tqdm(total=total, initial=self.step, disable=not self.progress, dynamic_ncols=True,
                   desc="train", unit="it")
        start = time.perf_counter() - self.elapsed
        scalars: dict[str, float] = {"psnr": float("nan")}
        rescaled = budget is None
        if budget is None:
            self._rescale_schedules(total)
        while self.step < total:
            self._update_schedules()
            scalars = self.train_step()
            self.step += 1
            self.elapsed = time.perf_counter() - start
            if not rescaled and self.step >= 10:
                bar.total = self.rescale_to_budget(budget)
                rescaled = True
            elif budget is not None and self.step % 100 == 0:  # progress bar only: keep the ETA honest
                bar.total = min(total, int(self.step * budget / max(self.elapsed, 1e-6)))
            self._after_step(scalars, logger, bar)
            if budget is not None and self.elapsed >= budget:
                break
        bar.close()
        save_checkpoint(self.run.ckpt_path, self.model, self.optimizer, self.step, self.elapsed)
        logger.close()
        return TrainResult(self.step, self.elapsed, scalars.get("psnr", float("nan")))

    def _after_step(self, scalars: dict, logger: ScalarLogger, bar) -> None:
        cfg = self.cfg.train
        bar.update(1)
        if self.step % cfg.log_every == 0 or self.step == 1:
            logger.log(self.step, {**scalars, "seconds": self.elapsed})
            bar.set_postfix(loss=f"{scalars['loss']:.4f}", psnr=f"{scalars['psnr']:.2f}",
                            inv_s=f"{scalars['inv_s']:.0f}")
        if cfg.val_every > 0 and self.step % cfg.val_every == 0:
            self.validate()
        if cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0:
            save_checkpoint(self.run.ckpt_path, self.model, self.optimizer, self.step, self.elapsed)

    def validate(self) -> None:
        """Render one held-out view at ``val_downscale`` and save a PNG strip (gt | rgb | normal | depth)."""
        split = self.scene.splits.get("test") or self.train_split
        cam = (self.step // max(self.cfg.train.val_every, 1)) % len(split)
        save_validation_image(self.model, split, cam, self.cfg, self.device,
                              self.run.root / "val" / f"step_{self.step:06d}.png")


def train(cfg: Config, run: RunDir, resume: bool = False, progress: bool = True,
          scene: SceneData | None = None) -> TrainResult:
    trainer = Trainer(cfg, run, scene=scene, progress=progress)
    return trainer.fit(resume=resume)

