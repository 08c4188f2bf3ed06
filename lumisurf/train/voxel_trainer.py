"""Training a sparse-voxel model (``model.kind = "voxels"``, ``Config.voxels``): one training view per step.

Per step: a random training view (all its pixels, at ``voxels.train.downscale``) is rendered and compared with the
image composited over a random background (L2), plus an L2 between the rendered opacity and the mask where
there are masks, and, where their weights ask for them, 1 - SSIM, the distortion, the consistency of the
rendered normal with the normal of the rendered median depth, an L1 to GT depth (``losses/depth.py``), and
the entropy of the deferred material mixture (``loss.segmentation.entropy_weight``).

Schedules read the one progress in [0, 1]: SH bands grow every ``sh_band_every``; every ``adapt_every`` until
``adapt_until`` the voxels are pruned (max blending weight over all training views below a threshold ramped
from ``prune_from`` to ``prune_to``) and the ``subdivide_fraction`` with the largest accumulated priority
subdivided (children stay larger than ``subdivide_min_footprint`` pixels), under the voxel cap. Regularisers on
the corner values (:mod:`lumisurf.losses.voxels`): TV, and in sdf mode eikonal, twist and smoothness across
faces, until ``regularize_until``; in sdf mode optionally a Laplacian step after each update.

The divergence guard (``train/guard.py``) watches the loss, the mask coverage, inv_s (sdf) and the parameters,
and rolls back to a healthy snapshot (its voxel layout included) with a lower learning rate. Checkpoints hold
the voxel layout, the optimizer state, the RNG and the step; a run never ends without one (``train/loop.py``).
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from lumisurf.data.images import as_float
from lumisurf.data.load import composite, load_config_scene
from lumisurf.data.scene import SceneData
from lumisurf.losses.depth import depth_l1, depth_normals, normal_consistency, ray_depth
from lumisurf.losses.geometry import mask_l2_loss
from lumisurf.losses.photometric import psnr_from_mse, rgb_loss
from lumisurf.losses.segmentation import entropy_loss
from lumisurf.losses.ssim import ssim_map
from lumisurf.losses.voxels import (
    face_neighbours,
    laplacian_smooth_,
    voxel_eikonal,
    voxel_smoothness,
    voxel_tv,
    voxel_twist,
)
from lumisurf.train.checkpoint import read_checkpoint
from lumisurf.train.device import resolve_device
from lumisurf.train.distributed import SINGLE, Distributed
from lumisurf.train.guard import DivergenceGuard, batch_coverage
from lumisurf.train.loop import LoopFiles, TrainingLoop, require_finite
from lumisurf.train.progress import TrainingClock
from lumisurf.train.run_dir import RunDir
from lumisurf.train.visualize import save_validation_strip
from lumisurf.voxels.adaptive import adapt, pixel_footprint, voxel_cap
from lumisurf.voxels.build import EXTENT, build_voxel_model, voxel_model_from_state
from lumisurf.voxels.model import downscaled


def extra_views(n_views: int, seen: set[int], total: int) -> list[int]:
    """Evenly spaced views outside ``seen`` so that ``seen`` and them count ``total`` (all views if fewer)."""
    missing = [v for v in range(n_views) if v not in seen]
    need = min(len(missing), max(0, total - len(seen)))
    if need == 0:
        return []
    return [missing[int(i * len(missing) / need)] for i in range(need)]


class VoxelTrainer(TrainingLoop):
    loop_desc, rollback_noun = "train voxels", "voxels"

    def __init__(
        self,
        cfg,
        run: RunDir,
        scene: SceneData | None = None,
        progress: bool = True,
        dist: Distributed = SINGLE,  # one rank only: check_data_parallel refuses more before this is built
        resume: bool = False,
    ):
        self.cfg, self.run, self.progress, self.vc = cfg, run, progress, cfg.voxels
        self.loop_cfg, self.files = cfg.train, LoopFiles(run.ckpt_path, run.scalars_path)
        self.device = resolve_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        self.scene = scene if scene is not None else load_config_scene(cfg.data)
        self.scene.normalization.save(run.norm_path)
        self.train_split = self.scene.split("train")
        self.cameras = self.train_split.cameras.to(self.device)
        masks = self.train_split.masks
        self.model = (
            voxel_model_from_state(cfg, read_checkpoint(run.ckpt_path, self.device)["model"])
            if resume
            else build_voxel_model(cfg, self.train_split.cameras, None if masks is None else masks > 0.5)
        )
        self.model.to(self.device)
        self.optimizer = self._make_optimizer()
        self.clock = TrainingClock.from_config(cfg.train)
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.step, self.elapsed, self.adapt_round, self.last_adapt_step = 0, 0.0, 0, 0
        self.guard = DivergenceGuard(cfg.train.guard)
        self.coverage_ema = 0.0
        self.cap = voxel_cap(self.vc.structure.max_voxels, self.vc.structure.max_memory_mb, self.vc.model.sh_bands)
        self._reset_weight_stats()

    def _reset_weight_stats(self) -> None:
        """Largest blending weight per voxel over the training renders since the last layout change."""
        self.max_weight = torch.zeros(len(self.model.tree), device=self.device)
        self.views_seen: set[int] = set()
        self.pairs = None  # face-neighbour pairs of this layout, found when the smoothness term first needs them
        self.corner_scale = None  # per-corner step scale of this layout (lr_geo_by_size)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        vc = self.vc
        groups = self.model.param_groups(self.cfg)
        self.base_lr = {g["name"]: g["lr"] for g in groups}  # what set_lr_scale scales
        return torch.optim.Adam(groups, betas=(vc.train.beta1, 0.99), eps=1e-15)

    # ------------------------------------------------------------------ one step
    def _target(self, view: int, bg):
        img = as_float(self.train_split.images[view].to(self.device))
        mask = None if self.train_split.masks is None else self.train_split.masks[view].to(self.device)
        ds = self.vc.train.downscale
        if ds > 1:
            pool = lambda x: torch.nn.functional.avg_pool2d(x.permute(2, 0, 1)[None], ds)[0].permute(1, 2, 0)  # noqa: E731
            img = pool(img)
            mask = None if mask is None else pool(mask[..., None])[..., 0]
        rgb = composite(img, None if mask is None else mask[..., None], bg).reshape(-1, 3)
        return rgb, None if mask is None else mask.reshape(-1, 1)

    def train_step(self) -> dict[str, float]:
        view = int(torch.randint(len(self.cameras), (1,), generator=self.generator))
        bg = (
            torch.rand(3, generator=self.generator).to(self.device)
            if self.train_split.masks is not None
            else torch.ones(3, device=self.device)
        )
        target, mask = self._target(view, bg)
        out = self.model.rasterize_view(
            downscaled(self.cameras, self.vc.train.downscale), view, bg, backend=self.vc.model.backend
        )
        self.max_weight = torch.maximum(self.max_weight, out["max_weight"].detach())
        self.views_seen.add(view)
        terms = {"rgb": (1.0, rgb_loss(out["rgb"], target, "l2"))}
        if mask is not None and self.vc.loss.mask_l2_weight > 0:
            terms["mask"] = (self.vc.loss.mask_l2_weight, mask_l2_loss(out["opacity"], mask))
        terms.update(self._image_terms(out, view, target))
        terms.update(self._regularizers())
        loss = sum(w * v for w, v in terms.values())
        scalars = {f"loss_{k}": v.item() for k, (_, v) in terms.items()}
        require_finite(loss, scalars)  # never step on a NaN
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.vc.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.vc.train.grad_clip
            )
        self._optimizer_step()
        with torch.no_grad():
            mse = torch.mean((out["rgb"].detach().clamp(0, 1) - target) ** 2)
        scalars.update(
            loss=loss.item(),
            psnr=psnr_from_mse(mse).item(),
            voxels=float(len(self.model.tree)),
            coverage=batch_coverage(out["opacity"], mask),
        )
        if self.model.mode == "sdf":
            scalars["inv_s"] = float(self.model.inv_s.detach())
        return scalars

    def _optimizer_step(self) -> None:
        """Adam's step; with ``lr_geo_by_size`` each corner's step is scaled by its smallest voxel's edge over
        the starting edge (a per-corner learning rate: Adam moves every element by about the rate); then, in
        sdf mode, ``smooth_step`` of explicit Laplacian smoothing of the corners."""
        if not self.vc.train.lr_geo_by_size:
            self.optimizer.step()
        else:
            old = self.model.geo.detach().clone()
            self.optimizer.step()
            with torch.no_grad():
                self.model.geo.copy_(old + (self.model.geo - old) * self._corner_scale())
        if self.model.mode == "sdf" and self.vc.train.smooth_step > 0:
            laplacian_smooth_(self.model.geo.data, self.model.tree.vox_key, self.vc.train.smooth_step)

    def _corner_scale(self) -> torch.Tensor:
        if self.corner_scale is None:
            tree = self.model.tree
            size = tree.boxes()[1][:, None].expand(-1, 8).reshape(-1)
            smallest = torch.full((tree.n_corners,), EXTENT, device=size.device)
            smallest = smallest.scatter_reduce(0, tree.vox_key.reshape(-1), size, "amin")
            self.corner_scale = (smallest / (EXTENT * 2.0**-self.vc.model.init_level)).clamp_max(1.0)
        return self.corner_scale

    def _image_terms(self, out: dict, view: int, target: torch.Tensor) -> dict:
        """SSIM, distortion, median-depth normal consistency and GT depth terms, where their weights (and
        schedules, and the data) ask for them."""
        vc, p = self.vc, self.clock.progress(self.step, self.elapsed)
        cams = downscaled(self.cameras, vc.train.downscale)
        h, w = cams.height, cams.width
        terms = {}
        if vc.loss.ssim_weight > 0:
            img = lambda x: x.reshape(1, h, w, 3).permute(0, 3, 1, 2)  # noqa: E731
            terms["ssim"] = (vc.loss.ssim_weight, 1.0 - ssim_map(img(out["rgb"]), img(target)).mean())
        seg_w = self.cfg.loss.segmentation.entropy_weight
        if "material_probs" in out and seg_w > 0:  # the deferred mixture: one material per point
            covered = out["opacity"][:, 0] > 1e-3
            terms["entropy"] = (seg_w, entropy_loss(out["material_probs"][covered]))  # 0 when none covered
        if vc.loss.distortion_weight > 0 and p >= vc.loss.distortion_from:
            terms["distortion"] = (vc.loss.distortion_weight, out["distortion"].mean())
        want_normal = vc.loss.depth_normal_weight > 0 and p >= vc.loss.depth_normal_from
        want_depth = vc.loss.depth_weight > 0 and self.train_split.depths is not None
        if want_normal or want_depth:
            o, d, _, _ = cams.pixel_rays(view)
        if want_normal:
            med = out["median_depth"].detach()
            n_d, ok = depth_normals((o + d * med).reshape(h, w, 3), d.reshape(h, w, 3), (med > 0).reshape(h, w))
            terms["normal"] = (vc.loss.depth_normal_weight, normal_consistency(out["normal"].reshape(h, w, 3), n_d, ok))
        if want_depth:
            ds = vc.train.downscale
            z = self.train_split.depths[view, ds // 2 :: ds, ds // 2 :: ds][:h, :w].to(self.device).reshape(-1)
            gt = ray_depth(z, d, cams.c2w[view, :3, 2])
            terms["depth"] = (vc.loss.depth_weight, depth_l1(out["depth"].reshape(-1), gt))
        return terms

    def _regularizers(self) -> dict:
        """Weighted regularisers on the corner values of all voxels, while ``regularize_until`` lasts."""
        vc = self.vc
        if self.clock.progress(self.step, self.elapsed) >= vc.loss.regularize_until:
            return {}
        corners, size = self.model.corners(), self.model.tree.boxes()[1]
        wanted = {
            "tv": (vc.loss.tv_weight, lambda: voxel_tv(corners)),
            "eikonal": (
                vc.loss.eikonal_weight if self.model.mode == "sdf" else 0.0,
                lambda: voxel_eikonal(corners, size),
            ),
            "twist": (vc.loss.twist_weight if self.model.mode == "sdf" else 0.0, lambda: voxel_twist(corners, size)),
            "smooth": (
                vc.loss.smooth_weight if self.model.mode == "sdf" else 0.0,
                lambda: voxel_smoothness(corners, size, self._pairs()),
            ),
        }
        return {k: (w, f()) for k, (w, f) in wanted.items() if w > 0}

    def _pairs(self) -> torch.Tensor:
        if self.pairs is None:
            self.pairs = face_neighbours(self.model.tree)
        return self.pairs

    def observe(self, scalars: dict) -> None:
        cov = scalars.get("coverage", float("nan"))
        if math.isfinite(cov):
            self.coverage_ema = 0.9 * self.coverage_ema + 0.1 * cov

    def snapshot_extra(self) -> dict:
        return {"adapt_round": self.adapt_round, "last_adapt_step": self.last_adapt_step}

    def restore_snapshot_extra(self, extra: dict) -> None:
        self.adapt_round, self.last_adapt_step = int(extra["adapt_round"]), int(extra["last_adapt_step"])
        self._reset_weight_stats()

    def set_lr_scale(self, scale: float) -> None:
        """Every group's learning rate: its base x the guard's ``scale``, the geometry's also x its decay."""
        vc = self.vc
        decay = 1.0
        if vc.train.lr_geo_final is not None:
            p = min(1.0, self.clock.progress(self.step, self.elapsed))
            decay = (vc.train.lr_geo_final / vc.train.lr_geo) ** p
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr[group["name"]] * scale * (decay if group["name"] == "geo" else 1.0)

    # ------------------------------------------------------------------ schedules
    def update_schedules(self) -> None:
        p = self.clock.progress(self.step, self.elapsed)
        vc = self.vc
        if vc.train.lr_geo_final is not None:
            self.set_lr_scale(self.lr_scale)
        self.model.active_bands = min(vc.model.sh_bands, 1 + int(p / max(vc.model.sh_band_every, 1e-9)))
        if vc.model.inv_s_final is not None:
            ramp = min(1.0, p / max(vc.model.inv_s_until, 1e-9))
            self.model.inv_s_floor.fill_(vc.model.inv_s_init * (vc.model.inv_s_final / vc.model.inv_s_init) ** ramp)
        due = int(p / max(vc.structure.adapt_every, 1e-9))
        if (
            p < vc.structure.adapt_until
            and due > self.adapt_round
            and self.step - self.last_adapt_step >= vc.structure.adapt_min_steps
        ):
            self.adapt_round, self.last_adapt_step = due, self.step
            ramp = min(1.0, p / max(vc.structure.adapt_until, 1e-9))
            formed = self.coverage_ema >= vc.structure.prune_min_coverage
            threshold = (
                vc.structure.prune_from + (vc.structure.prune_to - vc.structure.prune_from) * ramp if formed else 0.0
            )
            cams = downscaled(self.cameras, vc.train.downscale)
            can_split = 0.5 * self.model.tree.boxes()[1] > vc.structure.subdivide_min_footprint * pixel_footprint(
                self.model.tree.centres(), cams
            )
            if vc.structure.max_level is not None:
                can_split &= self.model.tree.level < vc.structure.max_level
            res = adapt(
                self.model,
                self.optimizer,
                self._max_weights(),
                self._priority(),
                threshold,
                vc.structure.subdivide_fraction,
                self.cap,
                can_split,
            )
            self._reset_weight_stats()
            tqdm.write(f"step {self.step}: {res.line()}")

    @torch.no_grad()
    def _max_weights(self) -> torch.Tensor:
        """Largest blending weight of every voxel over the training renders since the last layout change, plus
        renders of evenly spaced views they missed until ``prune_views`` views are counted (every view on
        SVRaster's GPU; here each extra view costs a full render)."""
        cams = downscaled(self.cameras, self.vc.train.downscale)
        best = self.max_weight
        for view in extra_views(len(cams), self.views_seen, self.vc.structure.prune_views):
            best = torch.maximum(
                best,
                self.model.rasterize_view(cams, view, torch.ones(3, device=self.device), backend=self.vc.model.backend)[
                    "max_weight"
                ],
            )
        return best

    def _priority(self) -> torch.Tensor:
        g = self.model.priority.grad
        return torch.zeros(len(self.model.tree), device=self.device) if g is None else g.detach().clone()

    # ------------------------------------------------------------------ checkpoints
    def extra_state(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "adapt_round": self.adapt_round,
            "last_adapt_step": self.last_adapt_step,
            "coverage_ema": self.coverage_ema,
        }

    def load_extra_state(self, extra: dict) -> None:
        self.generator.set_state(extra["generator"])
        self.adapt_round, self.last_adapt_step = int(extra["adapt_round"]), int(extra.get("last_adapt_step", 0))
        self.coverage_ema = float(extra.get("coverage_ema", 0.0))
        self._reset_weight_stats()

    def postfix(self, scalars: dict) -> dict:
        return {"psnr": f"{scalars.get('psnr', float('nan')):.2f}", "voxels": len(self.model.tree)}

    def validate(self) -> None:
        save_validation_strip(self.model, self.scene, self.cfg, self.step, self.device, self.run.root)
