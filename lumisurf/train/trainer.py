"""Stage I trainer: ray batches -> model -> losses -> Adam, with schedules, checkpoints and logging."""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from lumisurf.config import Config
from lumisurf.data.load import background_color, composite, load_config_scene
from lumisurf.data.pixel_sampling.adaptive import build_pixel_sampler
from lumisurf.data.scene import SceneData
from lumisurf.errors import ConfigError
from lumisurf.losses.geometry import (
    curvature_loss,
    eikonal_loss,
    mask_loss,
    normal_smoothness_loss,
    surface_hits,
    surface_point_pairs,
)
from lumisurf.losses.occlusion import occlusion_loss
from lumisurf.losses.photometric import psnr_from_mse, rgb_loss
from lumisurf.losses.regularizers import grid_tv_loss
from lumisurf.losses.s3im import s3im_loss
from lumisurf.losses.segmentation import head_fit_loss
from lumisurf.models.surface import RenderState
from lumisurf.models.surface_io import build_model
from lumisurf.train.device import resolve_device
from lumisurf.train.distributed import SINGLE, Distributed
from lumisurf.train.guard import DivergenceGuard, batch_coverage
from lumisurf.train.loop import LoopFiles, TrainingLoop, TrainResult, require_finite  # noqa: F401  (TrainResult: re-exported)
from lumisurf.train.material_lift import FEATURE_NAMES, LiftNotReady, LiftTargets, lift_materials
from lumisurf.train.phases import PhaseSchedule, phases_from_config
from lumisurf.train.progress import TrainingClock
from lumisurf.train.reflection_weights import ReflectionWeights
from lumisurf.train.run_dir import RunDir
from lumisurf.train.schedules import CosAnnealSchedule, FDStepSchedule, LevelSchedule, WarmupCosineLR
from lumisurf.train.segmentation_step import segmentation_losses, warm_start_loss, warm_start_maps
from lumisurf.train.visualize import save_validation_strip


class Trainer(TrainingLoop):
    """``dist``: this process's rank of a data-parallel run (:mod:`lumisurf.train.distributed`)."""

    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        scene: SceneData | None = None,
        progress: bool = True,
        dist: Distributed = SINGLE,
        resume: bool = False,  # the common constructor of the trainers; this one resumes in fit(resume=True)
    ):
        self.cfg, self.run, self.progress, self.dist = cfg, run, progress and dist.is_main, dist
        self.loop_cfg, self.files = cfg.train, LoopFiles(run.ckpt_path, run.scalars_path, run.root / "tb")
        self.device = dist.device(resolve_device(cfg.train.device))
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        self.scene = scene if scene is not None else load_config_scene(cfg.data)
        if dist.is_main:
            self.scene.normalization.save(run.norm_path)
        self.train_split = self.scene.split("train")
        self.cameras = self.train_split.cameras.to(self.device)
        self.sampler = build_pixel_sampler(cfg.sampler, self.train_split, self.device)
        self.model = build_model(cfg.model, cfg.sampler, self.train_split.masks is not None).to(self.device)
        dist.broadcast_module(self.model)  # the same seed builds the same weights; rank 0's make sure of it
        # the fused Adam kernel (CPU and CUDA): one pass over the 4M-entry hash table instead of a dozen
        # (measured in benchmarks/results/step_profile.md)
        self.optimizer = torch.optim.Adam(
            self.model.param_groups(cfg), weight_decay=cfg.optim.weight_decay, fused=self.device.type in ("cpu", "cuda")
        )
        phases = phases_from_config(cfg.schedule)
        self.phases = None if phases is None else PhaseSchedule(phases)
        self.clock = TrainingClock.from_config(cfg.train)  # the one progress in [0, 1] every schedule reads
        self.progress_value = 0.0
        self.lr_schedule = WarmupCosineLR(
            self.optimizer, cfg.optim.warmup, cfg.optim.lr_min_factor, cfg.optim.warmup_min_steps
        )
        self.anneal = CosAnnealSchedule(cfg.train.anneal_until)
        grid = self.model.sdf.hash_grid()
        sc = cfg.schedule
        self.levels = LevelSchedule(
            sc.grid_start_levels, sc.grid_levels_until, grid.n_levels if grid is not None else 0
        )
        self.fd_step = FDStepSchedule(
            sc.fd_eps_mode, sc.fd_eps_start, sc.fd_eps_end, grid.resolutions if grid is not None else None
        )
        self.guard = DivergenceGuard(cfg.train.guard)
        # the step's pixels (and everything every rank must agree on) come from `generator`, the same on every
        # rank; what depends on the rank's own rays (jitter, S3IM patches, ...) from `render_generator`
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.render_generator = torch.Generator().manual_seed(cfg.train.seed + 7919 * (dist.rank + 1))
        self.step, self.elapsed = 0, 0.0
        self.occupied_fraction = 1.0
        self.has_masks = self.train_split.masks is not None
        refl = cfg.loss.reflection
        wanted = ReflectionWeights.wanted(refl)
        self.reflection = ReflectionWeights(refl, self.train_split, self.cameras, cfg.train.seed) if wanted else None
        self.warm_maps = warm_start_maps(cfg, self.train_split)  # 2D material maps [n, H, W, K] or None
        self.lift: LiftTargets | None = None  # init=materials: lifted Stage I clusters (from phase C)
        self._lift_retry = 0  # step from which a failed lift is tried again
        if self._lift_pending() and self.phases is None:
            raise ConfigError(
                "model.assignment.init=materials lifts at the start of phase C: set schedule.phases=abcde"
            )

    # ------------------------------------------------------------------ schedules
    def _active(self, loss: str) -> bool:
        """Whether a loss term is on at this step (always, without a phase schedule)."""
        return self.phases is None or self.phases.current.is_active(loss)

    def update_schedules(self) -> None:
        p = self.progress_value = self.clock.progress(self.step, self.elapsed)
        factor = self.lr_schedule.update(p, self.step)
        if self.phases is not None:  # phase E is Stage II: the end of the budget stays in D
            phase = self.phases.apply(self.optimizer.param_groups, min(p, 1.0 - 1e-9), self.step, factor)
            solo = self.cfg.model.assignment.pretrain_head
            if solo is not None:  # one head alone until the assignment trains
                self.model.set_solo_head(None if "assignment" in phase.trainable else solo)
            if (
                self.model.segmented
                and "assignment" in phase.trainable
                and self._lift_pending()
                and self.step >= self._lift_retry
            ):
                try:
                    self._lift()
                except LiftNotReady as exc:  # no surface yet (or it collapsed): try again later
                    tqdm.write(f"step {self.step}: {exc}; retrying in 100 steps")
                    self._lift_retry = self.step + 100
        self.anneal.update(p)
        levels = self.levels.update(p) if self.levels.n_levels > 0 else None
        self.model.sdf.set_progress(self.step, active_levels=levels, fd_eps=self.fd_step.update(p, levels))
        occ = self.model.occupancy
        if occ is not None and self.step % self.cfg.sampler.occupancy_every == 0:
            self.occupied_fraction = occ.update(
                self.model.sdf.sdf,
                self.model.variance.inv_s().item(),
                explore=self.cfg.sampler.occupancy_explore,
                generator=self.render_generator,
            )
            self.dist.broadcast_module(occ, buffers_only=True)  # every rank skips the same space

    def _lift_pending(self) -> bool:
        return self.cfg.model.assignment.init == "materials" and self.lift is None

    def _lift(self) -> None:
        """Cluster the pretrain head's materials and fit the assignment to them (``train/material_lift.py``)."""
        a = self.cfg.model.assignment
        self.lift = lift_materials(
            self.model,
            self.cameras,
            self.train_split.images,
            self.train_split.masks,
            a.pretrain_head,
            a.lift,
            self.generator,
        )
        tqdm.write(
            f"step {self.step}: lifted Stage I materials at {self.lift.points.shape[0]} surface points; "
            f"cluster centres ({', '.join(FEATURE_NAMES[a.lift.features])}) per head {list(a.heads)}: "
            f"{self.lift.centres.numpy().round(2).tolist()}, separation {self.lift.separation:.2f}"
        )

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        batch = self.sampler.sample(cfg.train.batch_rays, self.generator)  # the whole step's batch, on every rank
        bg = background_color(cfg.data.background, cfg.train.batch_rays, self.generator, self.device)
        mine = self.dist.share(cfg.train.batch_rays)  # this rank's rays (all of them on one rank)
        part, bg = batch.rows(mine), bg[mine]
        o, d = self.cameras.rays(part.cam_idx, part.px, part.py)
        target = composite(part.rgb, part.mask, bg)
        out, loss, scalars = self._forward(part, o, d, bg, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.dist.average_gradients(self.model.parameters())
        self.optimizer.step()
        with torch.no_grad():
            per_ray_l1 = (out["rgb"].detach() - target).abs().mean(dim=-1)  # [n_rays]
        self.sampler.update(batch, self.dist.gather_rows(per_ray_l1), self.step)
        scalars.update(
            lr=self.optimizer.param_groups[0]["lr"], occupied=self.occupied_fraction, progress=self.progress_value
        )
        return scalars

    def _forward(self, part, o, d, bg, target) -> tuple[dict, torch.Tensor, dict[str, float]]:
        """Render this rank's rays and weigh the losses: (outputs, loss, scalars averaged over the ranks).
        Raises FloatingPointError on every rank when the loss is not finite, or the forward failed, on any
        (the guard then rolls every rank back alike)."""
        failure = None
        try:
            out, loss, local = self._losses(part, o, d, bg, target)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            if not self.dist.enabled:
                raise
            out, loss, local = {}, None, {"loss": math.nan}
            failure = f"rank {self.dist.rank}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        mean_loss = self.dist.mean_values([local["loss"]], self.device)[0]  # NaN on every rank if one failed
        if failure is not None:
            raise FloatingPointError(failure)
        require_finite(mean_loss, local)  # never step on a NaN: every rank raises alike
        scalars = dict(zip(local, self.dist.mean_values(list(local.values()), self.device)))
        scalars["psnr"] = psnr_from_mse(torch.tensor(scalars.pop("mse"))).item()
        return out, loss, scalars

    def _losses(self, part, o, d, bg, target) -> tuple[dict, torch.Tensor, dict[str, float]]:
        state = RenderState(self.anneal.value, self.cfg.sampler.perturb, self.render_generator)
        out = self.model(o, d, bg, state)
        terms = self._loss_terms(out, part, target, o, d)
        if self.model.segmented:
            terms.update(self._segmentation_terms(out, part, o, d, target, bg, state))
        loss = torch.zeros((), device=o.device)
        for weight, value in terms.values():  # one weighted sum, in the order the terms were added
            loss = loss + weight * value
        with torch.no_grad():
            mse = torch.mean((out["rgb"].clamp(0, 1) - target) ** 2)
        local = {f"loss_{name}": value.item() for name, (_, value) in terms.items()}
        local.update(
            samples_per_ray=float(out["samples_per_ray"]),
            loss=loss.item(),
            mse=mse.item(),
            inv_s=out["inv_s"].item(),
            coverage=batch_coverage(out["opacity"], part.mask),
            **self.model.sdf.proposal_stats(),
        )
        return out, loss, local

    def _loss_terms(self, out, batch, target, o, d) -> dict[str, tuple[float, torch.Tensor]]:
        """name -> (weight, value) of every loss term that is on at this step (``loss_<name>`` in scalars.csv)."""
        lc = self.cfg.loss
        inside = out["inside"].to(out["gradients"].dtype)
        refl, weight = None, batch.weight
        if self.reflection is not None and self.reflection.active(self.progress_value):
            refl = self.reflection.weights(out, batch, o, d, self.render_generator)
            weight = refl.weight[:, None] * (1.0 if batch.weight is None else batch.weight)
        terms = {
            "rgb": (lc.rgb_weight, rgb_loss(out["rgb"], target, lc.rgb, weight=weight, delta=lc.huber_delta)),
            "eikonal": (lc.eikonal_weight, eikonal_loss(out["gradients"], inside)),
        }
        if lc.s3im_weight > 0:
            terms["s3im"] = (
                lc.s3im_weight,
                s3im_loss(
                    out["rgb"],
                    target,
                    lc.s3im_kernel,
                    lc.s3im_stride,
                    lc.s3im_repeats,
                    lc.s3im_patch_height,
                    generator=self.render_generator,
                ),
            )
        if lc.curvature_weight > 0 and out.get("laplacian") is not None:
            terms["curvature"] = (lc.curvature_weight, curvature_loss(out["laplacian"]))
        if lc.normal_smooth_weight > 0:
            terms["normal_smooth"] = (lc.normal_smooth_weight, self._normal_smoothness(out, o, d))
        if refl is not None and lc.reflection.smooth_weight > 0:
            terms["reflect_smooth"] = (lc.reflection.smooth_weight, self._normal_smoothness(out, o, d, refl.gate))
        if refl is not None:
            terms["reflect_weight"] = (0.0, refl.weight.mean())  # logged only: the mean photometric weight
        grid = self.model.sdf.hash_grid()
        if lc.grid_tv_weight > 0 and grid is not None and self._active("grid_tv"):
            terms["grid_tv"] = (lc.grid_tv_weight, grid_tv_loss(grid))
        if self.has_masks and lc.mask_weight > 0:
            terms["mask"] = (lc.mask_weight, mask_loss(out["opacity"], batch.mask))
        if "expert_loss" in out:  # gated resolution experts: distil the cheap expert
            terms["expert"] = (self.cfg.model.sdf.experts.weight, out["expert_loss"])
        if lc.occlusion_weight > 0 and "occ_pred" in out:  # NeRO shading
            terms["occ"] = (lc.occlusion_weight, occlusion_loss(out["occ_pred"], out["occ_target"]))
        return terms

    def _normal_smoothness(self, out, o, d, gate: torch.Tensor | None = None) -> torch.Tensor:
        """Normal smoothness at the batch's surface hits; ``gate`` [n_rays] weighs each hit's pair."""
        lc = self.cfg.loss
        hit = surface_hits(out["opacity"], lc.normal_smooth_points)
        depth, opacity = out["depth"][hit], out["opacity"][hit]
        pairs = surface_point_pairs(
            o[hit], d[hit], depth, opacity, lc.normal_smooth_eps, len(hit), self.render_generator
        )  # [2, P, 3]
        grad = self.model.sdf.sdf_and_gradient(pairs.reshape(-1, 3), create_graph=True)[2]  # [2P, 3]
        return normal_smoothness_loss(*grad.reshape(2, -1, 3).unbind(0), weight=None if gate is None else gate[hit])

    def _segmentation_terms(self, out, batch, o, d, target, bg, state) -> dict[str, tuple[float, torch.Tensor]]:
        seg = self.cfg.loss.segmentation
        render = lambda o2, d2: self.model(o2, d2, bg[: o2.shape[0]], state, need_grad_graph=False)  # noqa: E731
        terms = segmentation_losses(
            self.model, out, o, d, target, self.cameras, seg, self._active, render, self.render_generator
        )
        if self.warm_maps is not None and seg.warm_start_weight > 0 and self._active("warm_start"):
            terms["warm_start"] = warm_start_loss(out, self.warm_maps, batch.cam_idx, batch.px, batch.py)
        if self.lift is not None and seg.lift_weight > 0 and self._active("lift"):
            terms["lift"] = self.lift.loss(self.model.assignment, o.shape[0], self.render_generator)
        if self.model.solo_head is not None and seg.head_fit_weight > 0:
            terms["head_fit"] = head_fit_loss(out["head_rgb"], out["opacity"], target, self.model.solo_head)
        return {name: (getattr(seg, f"{name}_weight"), value) for name, value in terms.items()}

    # ------------------------------------------------------------------ guarded step and loop
    def pre_step_reason(self) -> str | None:
        return self.guard.check_occupancy(self.occupied_fraction)

    def snapshot_extra(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "lift": self._lift_state()}

    def restore_snapshot_extra(self, extra: dict) -> None:
        self.sampler.load_state_dict(extra["sampler"])
        self._load_lift_state(extra["lift"])
        self.occupied_fraction = self._grid_occupied()

    def set_lr_scale(self, scale: float) -> None:
        self.lr_schedule.scale = scale

    def _grid_occupied(self) -> float:
        """Occupied fraction of the occupancy grid as it stands (1 without a grid or before its first refresh)."""
        occ = self.model.occupancy
        return 1.0 if occ is None or not bool(occ.initialized) else float(occ.occupied.float().mean())

    def _lift_state(self) -> dict | None:
        if self.lift is None:
            return None
        return {
            "points": self.lift.points.detach().cpu(),
            "targets": self.lift.targets.detach().cpu(),
            "centres": self.lift.centres.detach().cpu(),
            "separation": float(self.lift.separation),
        }

    def _load_lift_state(self, state: dict | None) -> None:
        if state is None:
            self.lift = None
            return
        self.lift = LiftTargets(
            state["points"].to(self.device), state["targets"].to(self.device), state["centres"], state["separation"]
        )

    def extra_state(self) -> dict:
        """Everything besides weights that a resumed run needs to continue where it stopped."""
        return {
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "render_generator": self.render_generator.get_state(),
            "sampler": self.sampler.state_dict(),
            "lift": self._lift_state(),
            "phase_entered_step": 0 if self.phases is None else self.phases.entered_step,
        }

    def load_extra_state(self, extra: dict) -> None:
        if "generator" in extra:  # older checkpoints hold only the weights
            self.generator.set_state(extra["generator"])
            self._resume_render_generator(extra.get("render_generator"))
            torch.set_rng_state(extra["torch_rng"])
            self.sampler.load_state_dict(extra["sampler"])
            self._load_lift_state(extra["lift"])
        self.dist.broadcast_module(self.model)  # rank 0's state everywhere (it is the checkpoint's already)
        self.occupied_fraction = self._grid_occupied()
        if self.phases is not None:
            self.phases.update(min(self.clock.progress(self.step, self.elapsed), 1.0 - 1e-9), self.step)
            self.phases.entered_step = int(extra.get("phase_entered_step", 0))

    def _resume_render_generator(self, state) -> None:
        """Rank 0 continues the saved stream; the other ranks (their number may have changed) start new ones."""
        if state is not None and self.dist.is_main:
            self.render_generator.set_state(state)
        else:
            self.render_generator.manual_seed(self.cfg.train.seed + 7919 * (self.dist.rank + 1) + 104729 * self.step)

    def postfix(self, scalars: dict) -> dict:
        nan = float("nan")
        return {
            "loss": f"{scalars.get('loss', nan):.4f}",
            "psnr": f"{scalars.get('psnr', nan):.2f}",
            "inv_s": f"{scalars.get('inv_s', nan):.0f}",
        }

    def validate(self) -> None:
        """Render one held-out view at ``val_downscale`` and save a PNG strip (gt | rgb | normal | depth)."""
        save_validation_strip(self.model, self.scene, self.cfg, self.step, self.device, self.run.root)
