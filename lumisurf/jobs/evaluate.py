"""``lumisurf eval RUN``: image, mask, normal and mesh metrics of a run on a dataset's test split."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lumisurf.data.load import load_scene_normalized_as
from lumisurf.errors import LumisurfError
from lumisurf.eval.geometry_metrics import chamfer_distance, load_mesh
from lumisurf.eval.image_metrics import lpips_available, lpips_score, mask_iou, normal_mae_deg, psnr, ssim
from lumisurf.eval.segmentation_eval import segmentation_metrics
from lumisurf.eval.visible_chamfer import visible_chamfer
from lumisurf.jobs.extract import extract_run
from lumisurf.jobs.material import load_material_run, material_dir
from lumisurf.jobs.material_eval import material_errors, relight_metrics
from lumisurf.jobs.render import render_split, renders_exist
from lumisurf.shading.lighting import find_env_file
from lumisurf.train.visualize import gt_image

METRIC_KEYS = (
    "psnr",
    "ssim",
    "lpips",
    "chamfer",
    "chamfer_visible",
    "normal_mae_deg",
    "mask_iou",
    "train_seconds",
    "steps",
    "albedo_psnr",
    "albedo_psnr_aligned",
    "albedo_mae",
    "roughness_mae",
    "metallic_mae",
    "relight_psnr",
    "relight_psnr_scaled",
    "relight_ssim",
    "matid_iou",
    "seg_reprojection_iou",
    "seg_reprojection_variance",
)


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _downsample(t: torch.Tensor, f: int) -> torch.Tensor:
    if f <= 1:
        return t
    return torch.nn.functional.avg_pool2d(t.permute(2, 0, 1)[None], f)[0].permute(1, 2, 0)


def image_metrics(loaded, scene, split_name: str, progress: bool, force: bool = False) -> dict:
    """Render the split and compare with its images, masks and GT normals (means over views).

    The renders are saved to RUN/renders/<split> unless renders are already there (then ``force``).
    """

    ds, split = loaded.cfg.eval.render_downscale, scene.split(split_name)
    use_lpips, _ = lpips_available()
    acc: dict[str, list] = {"psnr": [], "ssim": [], "lpips": [], "mask_iou": [], "normal_mae_deg": []}
    save = force or not renders_exist(loaded, split_name)
    seg_renders: list[dict] = []
    for i, out in render_split(loaded, scene, split_name, ds, loaded.cfg.eval.max_views, progress, save, force):
        pred = out["rgb"].cpu().clamp(0, 1)
        gt = gt_image(split, i, loaded.cfg, ds)[: pred.shape[0], : pred.shape[1]]
        acc["psnr"].append(psnr(pred, gt))
        acc["ssim"].append(ssim(pred, gt))
        acc["lpips"].append(lpips_score(pred, gt) if use_lpips else None)
        if split.masks is not None:
            gt_mask = _downsample(split.masks[i][..., None], ds)[..., 0]
            acc["mask_iou"].append(mask_iou(out["opacity"].cpu()[..., 0], gt_mask))
        if split.normals is not None:
            gt_n = split.normals[i]
            pred_n = out["normal"].cpu()
            if ds > 1:
                gt_n = gt_n[ds // 2 :: ds, ds // 2 :: ds]
            weight = (
                split.masks[i][ds // 2 :: ds, ds // 2 :: ds]
                if split.masks is not None
                else (gt_n.norm(dim=-1) > 0).float()
            )
            acc["normal_mae_deg"].append(normal_mae_deg(pred_n, gt_n, weight))
        if "material_probs" in out:
            seg_renders.append({k: out[k].cpu() for k in ("material_probs", "opacity", "depth")})
    metrics = {k: _mean(v) for k, v in acc.items()}
    if seg_renders:
        stems = [Path(f).stem for f in split.files[: len(seg_renders)]] if split.files else None
        metrics.update(
            segmentation_metrics(split, seg_renders, ds, out_dir=loaded.run.renders(split_name), stems=stems)
        )
    return metrics


def mesh_metrics(loaded, scene, split_name: str, progress: bool) -> dict:
    """Our whole-surface Chamfer and NeRO's visible-surface one (``split_name``'s cameras), both in the
    dataset's world frame."""
    if scene.gt_mesh is None:
        return {"chamfer": None, "chamfer_visible": None}

    if not loaded.run.mesh_path.exists():
        extract_run(loaded, progress=progress)
    pred = load_mesh(loaded.run.mesh_path)
    gt = scene.gt_mesh if not isinstance(scene.gt_mesh, (str, Path)) else load_mesh(scene.gt_mesh)
    res = chamfer_distance(pred, gt, n_samples=loaded.cfg.eval.chamfer_samples)
    out = {"chamfer": res["chamfer"], "chamfer_accuracy": res["accuracy"], "chamfer_completeness": res["completeness"]}
    norm = scene.normalization
    center = torch.tensor(norm.center, dtype=torch.float32)
    world = scene.split(split_name).cameras.transformed(1.0 / norm.scale, -center / norm.scale)  # x * s + c
    out.update(visible_chamfer(pred, gt, world, voxel=loaded.cfg.eval.chamfer_visible_voxel))
    return out


def evaluate_run(
    loaded,
    data_path: str | None = None,
    split: str = "test",
    progress: bool = True,
    force: bool = False,
    mesh_only: bool = False,
) -> dict:
    """All metrics of a run; ``None`` where not computable (never a fake 0). Writes RUN/metrics.json.

    An existing metrics.json is only replaced with ``force``. ``mesh_only`` recomputes the mesh metrics and
    keeps every other value of the existing metrics.json (which must exist).
    """

    if loaded.run.metrics_path.exists() and not force:
        raise LumisurfError(f"{loaded.run.metrics_path} exists; pass --force to replace it")
    if mesh_only:
        return _update_mesh_metrics(loaded, data_path, progress)
    data_cfg = loaded.cfg.data if data_path is None else replace(loaded.cfg.data, path=str(Path(data_path).resolve()))
    scene = load_scene_normalized_as(data_cfg, loaded.normalization)
    if split not in scene.splits:
        split = "train"
    metrics: dict = {"split": split, "dataset": data_cfg.path or "<builtin synthetic>"}
    metrics.update(image_metrics(loaded, scene, split, progress, force))
    metrics.update(mesh_metrics(loaded, scene, split, progress))
    metrics.update(train_seconds=loaded.elapsed, steps=loaded.step)

    metrics.update(stage2_metrics(loaded.run.root, scene, progress))
    if not lpips_available()[0]:
        metrics["lpips_note"] = lpips_available()[1]
    loaded.run.metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics


def _update_mesh_metrics(loaded, data_path: str | None, progress: bool) -> dict:
    if not loaded.run.metrics_path.exists():
        raise LumisurfError(f"--mesh-only needs an existing {loaded.run.metrics_path}; run eval without it first")
    metrics = json.loads(loaded.run.metrics_path.read_text())
    data_cfg = loaded.cfg.data if data_path is None else replace(loaded.cfg.data, path=str(Path(data_path).resolve()))
    scene = load_scene_normalized_as(data_cfg, loaded.normalization)
    split = metrics.get("split", "test") if metrics.get("split", "test") in scene.splits else "train"
    metrics.update(mesh_metrics(loaded, scene, split, progress))
    loaded.run.metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics


def format_table(metrics: dict) -> str:
    lines = [f"{'metric':<24}{'value':>14}", "-" * 38]
    parts = ("chamfer_accuracy", "chamfer_completeness", "chamfer_visible_accuracy", "chamfer_visible_completeness")
    for k in METRIC_KEYS + parts:
        if k not in metrics:
            continue
        v = metrics[k]
        s = "n/a" if v is None else (f"{v:.5f}" if isinstance(v, float) else str(v))
        lines.append(f"{k:<24}{s:>14}")
    return "\n".join(lines)


def stage2_metrics(run_root: Path, scene, progress: bool = True) -> dict:
    """Material errors on the test split and relight metrics on the relight split, when the run has a
    Stage II fit (else {}). Relit renders go to RUN/material/relight/<env stem>/."""
    if not (Path(run_root) / "material" / "material.pt").exists():
        return {}
    mrun = load_material_run(Path(run_root))
    test = scene.splits.get("test")
    metrics = {} if test is None else material_errors(mrun, test, mrun.cfg.eval.max_views, progress)
    name = scene.meta.get("relight_env_map")
    if "relight" in scene.splits and name is not None:
        env = find_env_file(mrun.cfg.data.path, name)
        bg = mrun.cfg.data.eval_background
        out = material_dir(mrun.run) / "relight" / Path(name).stem
        metrics.update(relight_metrics(mrun, scene.split("relight"), env, bg, out, mrun.cfg.eval.max_views, progress))
        metrics["relight_env_map"] = name
    return metrics
