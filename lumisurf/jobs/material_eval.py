"""Stage II evaluation and relighting: material-map errors against GT maps, relit renders and their PSNR/SSIM.

GT maps (synthetic glossy scenes) sit beside each image: ``r_i_albedo.png`` (sRGB-encoded base color),
``r_i_roughness.png``, ``r_i_metallic.png`` (value / 255) and ``r_i_depth.npy`` (0 = background). Errors
are over pixels where both the GT and our mesh are hit. Albedo is compared in linear units, raw and after
the per-channel least-squares scale that the lighting/albedo ambiguity leaves free (reported separately).
Relit images are compared in sRGB after compositing both on the training background color.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lumisurf.data.color_space import linear_to_srgb, srgb_to_linear
from lumisurf.data.images import as_float
from lumisurf.data.scene import Split
from lumisurf.eval.image_metrics import psnr, ssim
from lumisurf.renderers.mesh_render import material_maps, render_mesh_view, render_strategy
from lumisurf.shading.envmap import EnvImportanceSampler
from lumisurf.shading.lighting import Lighting, load_env
from lumisurf.train.visualize import to_uint8


def gt_material_maps(image_file: Path) -> dict[str, torch.Tensor] | None:
    """GT albedo (linear) [H, W, 3], roughness, metallic [H, W] and hit mask [H, W] beside an image, or None."""
    stem, parent = Path(image_file).stem, Path(image_file).parent
    files = {k: parent / f"{stem}_{k}.png" for k in ("albedo", "roughness", "metallic")}
    depth = parent / f"{stem}_depth.npy"
    if not all(f.exists() for f in files.values()) or not depth.exists():
        return None
    load = lambda f: torch.from_numpy(np.asarray(Image.open(f), dtype=np.float32) / 255.0)  # noqa: E731
    albedo = load(files["albedo"])[..., :3]
    grey = lambda t: t if t.ndim == 2 else t[..., 0]  # noqa: E731
    maps = {
        "albedo": srgb_to_linear(albedo),
        "roughness": grey(load(files["roughness"])),
        "metallic": grey(load(files["metallic"])),
        "mask": torch.from_numpy(np.load(depth).astype(np.float32) > 0),
    }
    matid = parent / f"{stem}_matid.png"
    if matid.exists():  # two-material scenes: GT material id per pixel (0 = background)
        maps["matid"] = torch.from_numpy(np.asarray(Image.open(matid), dtype=np.int64))
        maps["matid"] = grey(maps["matid"])
    return maps


def _albedo_scale(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-channel least-squares scale s minimising |s * pred - gt|^2 (pred, gt [M, 3])."""
    return (pred * gt).sum(0) / (pred * pred).sum(0).clamp_min(1e-8)


def material_errors(mrun, split: Split, max_views: int | None = None, progress: bool = True) -> dict:
    """Albedo PSNR (raw and scale-aligned, linear), albedo / roughness / metallic MAE over the split."""
    n = len(split) if max_views is None else min(max_views, len(split))
    preds, gts = [], []
    cams = split.cameras.to(mrun.device)
    for i in tqdm(range(n), desc="material maps", disable=not progress):
        gt = gt_material_maps(split.files[i]) if split.files else None
        if gt is None:
            return {}
        pred = material_maps(mrun.tracer, mrun.field, cams, i)
        both = pred["mask"] & gt["mask"]
        preds.append({k: pred[k][both] for k in ("albedo", "roughness", "metallic")})
        gts.append({k: gt[k][both] for k in ("albedo", "roughness", "metallic", "matid") if k in gt})
    cat = lambda xs, k: torch.cat([x[k] for x in xs])  # noqa: E731
    pa, ga = cat(preds, "albedo"), cat(gts, "albedo")
    scale = _albedo_scale(pa, ga)
    mse = lambda a, b: float(((a - b) ** 2).mean().clamp_min(1e-10))  # noqa: E731
    return {
        "albedo_psnr": -10 * np.log10(mse(pa.clamp(0, 1), ga)),
        "albedo_psnr_aligned": -10 * np.log10(mse((pa * scale).clamp(0, 1), ga)),
        "albedo_mae": float((pa - ga).abs().mean()),
        "roughness_mae": float((cat(preds, "roughness") - cat(gts, "roughness")).abs().mean()),
        "metallic_mae": float((cat(preds, "metallic") - cat(gts, "metallic")).abs().mean()),
        "roughness_mean": float(cat(preds, "roughness").mean()),
        "metallic_mean": float(cat(preds, "metallic").mean()),
        **per_material_errors(preds, gts),
    }


def per_material_errors(preds: list[dict], gts: list[dict]) -> dict:
    """Roughness / metallic MAE and means, albedo PSNR per GT material id (``*_id<k>`` keys), when the GT
    has material-id maps."""
    if not gts or "matid" not in gts[0]:
        return {}
    cat = lambda xs, k: torch.cat([x[k] for x in xs])  # noqa: E731
    ids = cat(gts, "matid")
    out: dict = {}
    for k in sorted(int(i) for i in ids.unique() if i > 0):
        sel = ids == k
        for key in ("roughness", "metallic"):
            p, g = cat(preds, key)[sel], cat(gts, key)[sel]
            out[f"{key}_mae_id{k}"] = float((p - g).abs().mean())
            out[f"{key}_mean_id{k}"] = float(p.mean())
        pa, ga = cat(preds, "albedo")[sel], cat(gts, "albedo")[sel]
        mse = float(((pa.clamp(0, 1) - ga) ** 2).mean().clamp_min(1e-10))
        out[f"albedo_psnr_id{k}"] = -10 * float(np.log10(mse))
    return out


def relight_lighting(mrun, env_file: Path) -> tuple[Lighting, EnvImportanceSampler]:
    """The run's lighting model with its environment replaced by ``env_file``. Occluded directions get one
    bounce off the mesh under the new map (``material.relight_indirect=bounce``) or nothing; never the learned
    indirect light, which belongs to the capture lighting."""
    env = load_env(env_file, height=4 * mrun.cfg.material.env_height).to(mrun.device)
    with torch.no_grad():
        sampler = EnvImportanceSampler(env.image().float().cpu())
    bounce = mrun.bounce(env) if mrun.cfg.material.relight_indirect == "bounce" else None
    return Lighting(env, bounce), sampler


def relight_views(
    mrun,
    split: Split,
    env_file: Path,
    out_dir: Path | None,
    spp: int,
    light_samples: int,
    max_views: int | None = None,
    progress: bool = True,
):
    """Render ``split``'s cameras under ``env_file``; yields (index, linear rgb [H,W,3], alpha [H,W]) and
    writes ``out_dir/<stem>.png`` (RGBA, sRGB) when out_dir is given."""
    lighting, sampler = relight_lighting(mrun, env_file)
    cams = split.cameras.to(mrun.device)
    n = len(split) if max_views is None else min(max_views, len(split))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n), desc=f"relight {Path(env_file).stem}", disable=not progress):
        rgb, alpha = render_mesh_view(
            mrun.tracer,
            mrun.field,
            lighting,
            cams,
            i,
            spp,
            light_samples,
            strategy=render_strategy(sampler, mrun.cfg.material.render_stratified),
            env_sampler=sampler,
            generator=torch.Generator().manual_seed(1000 + i),
        )
        if out_dir is not None:
            stem = Path(split.files[i]).stem if split.files else f"{i:03d}"
            srgb = linear_to_srgb(rgb)
            Image.fromarray(np.dstack([to_uint8(srgb), to_uint8(alpha)])).save(out_dir / f"{stem}.png")
        yield i, rgb, alpha


def relight_view_scores(rgb: torch.Tensor, alpha: torch.Tensor, gt: torch.Tensor, gt_alpha: torch.Tensor, bg: float):
    """PSNR / SSIM of one relit view: ``rgb`` [H, W, 3] linear render, ``alpha`` [H, W] its coverage, ``gt``
    [H, W, 3] sRGB in [0, 1] and ``gt_alpha`` [H, W, 1], both composited over grey ``bg``.

    ``relight_psnr_scaled``: after a per-channel least-squares scale of our render to the GT in linear units over
    the pixels both cover fully, with our render clipped to [0, 1] first as the 8-bit GT is (unclipped, a
    highlight at 20x white dominated the fit and dimmed the rest: aligned below raw on a near-mirror).
    """
    gt_c = gt * gt_alpha + bg * (1 - gt_alpha)
    a = alpha[..., None]
    pred_c = linear_to_srgb(rgb) * a + bg * (1 - a)
    sel = (gt_alpha[..., 0] > 0.99) & (alpha > 0.99)
    shown = rgb.clamp(0.0, 1.0)
    scale = _albedo_scale(shown[sel], srgb_to_linear(gt)[sel]) if bool(sel.any()) else torch.ones(3)
    pred_s = linear_to_srgb(shown * scale) * a + bg * (1 - a)
    return {
        "relight_psnr": psnr(pred_c, gt_c),
        "relight_ssim": ssim(pred_c, gt_c),
        "relight_psnr_scaled": psnr(pred_s, gt_c),
    }


def relight_metrics(
    mrun,
    split: Split,
    env_file: Path,
    bg: float,
    out_dir: Path | None,
    max_views: int | None = None,
    progress: bool = True,
) -> dict:
    """Mean :func:`relight_view_scores` over the split's views against its images."""
    m = mrun.cfg.material
    acc: dict[str, list[float]] = {"relight_psnr": [], "relight_ssim": [], "relight_psnr_scaled": []}
    for i, rgb, alpha in relight_views(
        mrun, split, env_file, out_dir, m.render_spp, m.render_light_samples, max_views, progress
    ):
        gt = as_float(split.images[i])
        gt_a = split.masks[i].float()[..., None] if split.masks is not None else torch.ones_like(gt[..., :1])
        for k, v in relight_view_scores(rgb, alpha, gt, gt_a, bg).items():
            acc[k].append(v)
    return {k: float(np.mean(v)) for k, v in acc.items() if v}


def preview_strip(mrun, split: Split, cam: int, path: Path) -> None:
    """One PNG: GT | render under the fitted lighting | albedo (sRGB) | roughness | metallic."""
    cams = split.cameras.to(mrun.device)
    with torch.no_grad():
        sampler = EnvImportanceSampler(mrun.lighting.env.image().float().cpu())
    rgb, alpha = render_mesh_view(
        mrun.tracer, mrun.field, mrun.lighting, cams, cam, spp=1, light_samples=128, env_sampler=sampler
    )
    maps = material_maps(mrun.tracer, mrun.field, cams, cam)
    a = alpha[..., None]
    gt = as_float(split.images[cam])
    if split.masks is not None:
        gt = gt * split.masks[cam][..., None] + (1 - split.masks[cam][..., None])
    tiles = [
        gt,
        linear_to_srgb(rgb) * a + (1 - a),
        linear_to_srgb(maps["albedo"]),
        maps["roughness"][..., None].expand(-1, -1, 3),
        maps["metallic"][..., None].expand(-1, -1, 3),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(torch.cat(tiles, 1))).save(path)


def mc_noise_psnr(
    mrun, split: Split, env_file: Path, spp: int, light_samples: int, stratified: bool, cam: int = 0
) -> float:
    """Monte-Carlo noise of one relit view as a PSNR (sRGB, covered pixels): the view rendered twice with
    independent samples; the noise of one render is the difference / sqrt(2), i.e. PSNR(a, b) + 3.01 dB.
    ``stratified``: Latin-hypercube directions (the fit's ``material.stratified`` for the training figure,
    ``render_stratified`` for the renders')."""
    lighting, sampler = relight_lighting(mrun, env_file)
    cams = split.cameras.to(mrun.device)
    renders = [
        render_mesh_view(
            mrun.tracer,
            mrun.field,
            lighting,
            cams,
            cam,
            spp,
            light_samples,
            strategy=render_strategy(sampler, stratified),
            env_sampler=sampler,
            generator=torch.Generator().manual_seed(seed),
        )
        for seed in (11, 12)
    ]
    sel = (renders[0][1] > 0.99) & (renders[1][1] > 0.99)
    a, b = (linear_to_srgb(rgb)[sel] for rgb, _ in renders)
    mse = float(((a - b) ** 2).mean().clamp_min(1e-12))
    return -10 * float(np.log10(mse)) + 10 * float(np.log10(2.0))
