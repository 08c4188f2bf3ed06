"""Quality vs training time: evaluation at checkpoints, a paused-clock training loop, curves.

Used by ``benchmarks/time_to_target.py`` (presets x datasets) and ``lumisurf bench ablate``
(variants of one dataset). Every ``every_s`` seconds of *training* time the clock is paused and the
model is evaluated on a few test views (PSNR, SSIM, normal MAE where the split has GT normals) and,
when the dataset has a GT mesh, by the Chamfer distance of a marching-cubes mesh (world units).
Time-to-target is the training time of the first evaluation that reaches the target, so it is
resolved to ``every_s`` seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lumisurf.errors import LumisurfError
from lumisurf.eval.geometry_metrics import chamfer_distance, load_mesh
from lumisurf.eval.image_metrics import normal_mae_deg, psnr, ssim
from lumisurf.mesh.export import mesh_to_world
from lumisurf.mesh.marching_cubes import extract_mesh
from lumisurf.train.visualize import gt_image, render_views_for

SSIM_WINDOW = 11  # images smaller than this get no SSIM (None)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class EvalSettings:
    """What one checkpoint evaluation computes."""

    n_views: int = 4  # evenly spaced test views (train views when there is no test split)
    downscale: int = 2  # render / compare at 1/downscale resolution (block averages of the GT)
    mesh_resolution: int = 128  # marching-cubes grid in the normalised frame
    chamfer_samples: int = 20_000  # surface samples on each mesh
    extra_image_metrics: bool = True  # SSIM and normal MAE besides PSNR


def eval_view_indices(n_total: int, n: int) -> list[int]:
    """``n`` evenly spaced view indices out of ``n_total`` (all when n >= n_total)."""
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, min(n, n_total))})


def _pool(t: torch.Tensor, f: int) -> torch.Tensor:
    """Block average of an [H, W, C] map by ``f`` (the block centre is where the ray is cast)."""
    if f <= 1:
        return t
    return torch.nn.functional.avg_pool2d(t.permute(2, 0, 1)[None].float(), f)[0].permute(1, 2, 0)


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def image_scores(
    model, scene, cfg, device, n_views: int, downscale: int = 2, extra: bool = True
) -> dict[str, float | None]:
    """Means over ``n_views`` test views: ``psnr`` (dB), ``ssim``, ``normal_mae_deg`` (degrees).

    Ground truth is composited on the training background color (``data.background``). SSIM is
    None for images smaller than its 11-pixel window; normal MAE (weighted by the GT mask, else by
    GT-normal presence) is None when the split has no GT normals. ``extra=False``: PSNR only.
    """

    split = scene.splits.get("test") or scene.split("train")
    acc: dict[str, list] = {"psnr": [], "ssim": [], "normal_mae_deg": []}
    for i in eval_view_indices(len(split), n_views):
        out = render_views_for(model, split, i, cfg, device, downscale)
        pred = out["rgb"].cpu().clamp(0, 1)  # [h, w, 3]
        gt = gt_image(split, i, cfg, downscale)
        h, w = min(pred.shape[0], gt.shape[0]), min(pred.shape[1], gt.shape[1])
        acc["psnr"].append(psnr(pred[:h, :w], gt[:h, :w]))
        if not extra:
            continue
        if min(h, w) >= SSIM_WINDOW:
            acc["ssim"].append(ssim(pred[:h, :w], gt[:h, :w]))
        if split.normals is not None:
            gt_n = _pool(split.normals[i], downscale)[:h, :w]  # [h, w, 3] (normalised inside the metric)
            weight = (
                _pool(split.masks[i][..., None], downscale)[:h, :w, 0]
                if split.masks is not None
                else (gt_n.norm(dim=-1) > 0).float()
            )
            acc["normal_mae_deg"].append(normal_mae_deg(out["normal"].cpu()[:h, :w], gt_n, weight))
    return {k: _mean(v) for k, v in acc.items()}


def load_gt_mesh(scene):
    """The scene's GT mesh as a ``trimesh.Trimesh`` in the dataset's world frame, or None."""
    gt = scene.gt_mesh
    return load_mesh(gt) if isinstance(gt, (str, Path)) else gt


def chamfer_to_gt(model, scene, gt_mesh, device, resolution: int, samples: int):
    """Chamfer (world units) of the marching-cubes mesh vs the GT mesh, and the world-frame mesh.

    The surface is the one ``lumisurf extract`` meshes (:meth:`lumisurf.models.protocol.SceneModel.surface_function`:
    density voxels go through TSDF fusion of the training views' depth). Returns (nan, None) when there is
    no surface to extract yet.
    """

    try:
        surface = model.surface_function(scene.split("train").cameras, resolution)
        mesh = extract_mesh(surface, resolution=resolution, bound=1.0, device=device)
    except LumisurfError:
        return math.nan, None
    mesh = mesh_to_world(mesh, scene.normalization)
    return chamfer_distance(mesh, gt_mesh, n_samples=samples)["chamfer"], mesh


def _round(v: float | None, digits: int):
    if v is None:
        return None
    return round(v, digits) if math.isfinite(v) else math.nan


class CheckpointEvaluator:
    """Callable ``(trainer) -> row``: train_seconds, steps, psnr, ssim, normal_mae_deg, chamfer, eval_seconds.

    ``chamfer`` is None without a GT mesh and nan while there is no surface; ``last_mesh`` keeps the
    most recent extracted mesh (world frame) for export.
    """

    def __init__(self, scene, settings: EvalSettings, gt_mesh=None):
        self.settings = settings
        self.gt_mesh = gt_mesh if gt_mesh is not None else load_gt_mesh(scene)
        self.last_mesh = None

    def __call__(self, trainer) -> dict:
        s, t0 = self.settings, time.perf_counter()
        model, scene, cfg, device = trainer.model, trainer.scene, trainer.cfg, trainer.device
        img = image_scores(model, scene, cfg, device, s.n_views, s.downscale, s.extra_image_metrics)
        chamfer = None
        if self.gt_mesh is not None:
            chamfer, mesh = chamfer_to_gt(model, scene, self.gt_mesh, device, s.mesh_resolution, s.chamfer_samples)
            self.last_mesh = mesh if mesh is not None else self.last_mesh
        row = {"train_seconds": round(trainer.elapsed, 2), "steps": trainer.step, "psnr": _round(img["psnr"], 4)}
        if s.extra_image_metrics:
            row.update(ssim=_round(img["ssim"], 4), normal_mae_deg=_round(img["normal_mae_deg"], 3))
        row.update(chamfer=_round(chamfer, 6), eval_seconds=round(time.perf_counter() - t0, 1))
        return row


# ----------------------------------------------------------------------------- training loop


def train_with_evals(
    trainer,
    budget_s: float,
    every_s: float,
    evaluate: Callable[[object], dict],
    on_row: Callable[[dict], None] | None = None,
    progress: str | None = None,
    early: tuple[float, float] | None = None,
) -> list[dict]:
    """Train ``trainer`` for ``budget_s`` seconds of training time, evaluating every ``every_s`` s.

    The clock is paused while ``evaluate(trainer)`` runs; a last evaluation follows the end of the
    budget (or of ``train.max_steps``). The schedules read the progress of the budget's clock (training
    seconds only: the clock is paused while evaluating). ``progress``: a label for a tqdm
    bar of training seconds (None: no bar). ``early`` = (every, until): evaluate every ``every`` s until
    ``until`` s, then every ``every_s`` (time-to-target resolved finely where targets are met early).
    Returns the evaluation rows.
    """
    from tqdm import tqdm

    bar = tqdm(
        total=round(budget_s, 1), desc=progress, unit="s", disable=progress is None, dynamic_ncols=True, leave=True
    )

    def next_after(t: float) -> float:
        step = early[0] if early is not None and t < early[1] else every_s
        return (math.floor(t / step) + 1) * step

    next_eval, rows = next_after(0.0), []
    trainer.set_budget(budget_s)
    while trainer.step < trainer.cfg.train.max_steps:
        t0 = time.perf_counter()
        trainer.guarded_step()
        dt = time.perf_counter() - t0
        trainer.elapsed += dt
        bar.update(round(min(trainer.elapsed, budget_s), 1) - bar.n)
        done = trainer.elapsed >= budget_s or trainer.step >= trainer.cfg.train.max_steps
        if trainer.elapsed >= next_eval or done:
            t_eval = time.perf_counter()
            row = evaluate(trainer)
            row["eval_seconds"] = round(time.perf_counter() - t_eval, 1)  # the whole time the clock was paused
            rows.append(row)
            value = row.get("psnr")
            bar.set_postfix(steps=trainer.step, psnr="n/a" if value is None else f"{value:.2f}")
            if on_row is not None:
                on_row(row)
            next_eval = next_after(trainer.elapsed)
        if done:
            break
    bar.close()
    return rows


# ----------------------------------------------------------------------------- summaries and plots


def first_time(rows: list[dict], key: str, ok: Callable[[float], bool]) -> float | None:
    """Training seconds of the first row whose ``key`` satisfies ``ok`` (None if never)."""
    for r in rows:
        v = r.get(key)
        if v is not None and np.isfinite(v) and ok(v):
            return r["train_seconds"]
    return None


def fmt_value(v, spec: str, none: str = "-") -> str:
    """``format(v, spec)``; ``none`` for None, 'no surface' for nan/inf."""
    if v is None:
        return none
    if isinstance(v, float) and not np.isfinite(v):
        return "no surface"
    return format(v, spec)


@dataclass
class MetricPanel:
    key: str  # row key, e.g. "psnr"
    label: str  # y-axis label
    target: float | None = None  # dashed horizontal line
    log: bool = False
    empty_text: str = "no data"


def plot_metric_grid(
    groups: dict[str, dict[str, list[dict]]], panels: list[MetricPanel], path: Path, title: str, xmax: float
) -> None:
    """Metric vs training seconds: one row of panels per group, one line per series (same color
    for a series name in every group). ``groups``: {group title: {series name: rows}}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = dict.fromkeys(n for series in groups.values() for n in series)
    colors = {n: f"C{k % 10}" for k, n in enumerate(names)}
    fig, axes = plt.subplots(len(groups), len(panels), figsize=(5.5 * len(panels), 3.6 * len(groups)), squeeze=False)
    for i, (group, series) in enumerate(groups.items()):
        for j, panel in enumerate(panels):
            _draw_panel(axes[i, j], group, series, panel, colors, xmax)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_panel(ax, group: str, series: dict[str, list[dict]], panel: MetricPanel, colors: dict, xmax: float) -> None:
    drawn = False
    for name, rows in series.items():
        pts = [
            (r["train_seconds"], r[panel.key])
            for r in rows
            if r.get(panel.key) is not None and np.isfinite(r[panel.key])
        ]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=name, color=colors[name])
            drawn = True
    ax.set_title(f"{group}: {panel.key}")
    ax.set_xlim(0, xmax * 1.05)
    ax.set_xlabel("training seconds")
    ax.set_ylabel(panel.label)
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, panel.empty_text, ha="center", va="center", transform=ax.transAxes)
        return
    if panel.target is not None:
        ax.axhline(panel.target, ls="--", c="grey", lw=1, label=f"target {panel.target:g}")
    if panel.log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
