"""Pictures people look at: validation strips and per-view render PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lumisurf.data.images import as_float
from lumisurf.data.load import composite
from lumisurf.models.surface import RenderState
from lumisurf.renderers.image import render_view


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[H, W, C] float in [0, 1] -> uint8 (C = 1 becomes grey)."""
    arr = (img.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def normal_image(normal: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """World normals [H,W,3] -> colors (n + 1) / 2 over white background by opacity."""
    n = torch.nn.functional.normalize(normal, dim=-1)
    return (n + 1) * 0.5 * opacity + (1 - opacity)


def depth_image(depth: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """Expected ray distance [H,W,1] -> grey [H,W,3] normalised over the foreground range (near = bright)."""
    d = depth / opacity.clamp_min(1e-6)
    fg = opacity[..., 0] > 0.5
    if fg.any():
        lo, hi = d[fg].min(), d[fg].max()
        g = 1 - (d - lo) / (hi - lo + 1e-8)
    else:
        g = torch.zeros_like(d)
    g = g.clamp(0, 1) * opacity
    return g.expand(*g.shape[:2], 3)


def save_validation_strip(model, scene, cfg, step: int, device, root: Path) -> None:
    """The validation strip of ``step``: the held-out views (train if none) in turn, one per ``val_every``."""
    split = scene.splits.get("test") or scene.split("train")
    cam = (step // max(cfg.train.val_every, 1)) % len(split)
    save_validation_image(model, split, cam, cfg, device, Path(root) / "val" / f"step_{step:06d}.png")


def render_views_for(model, split, cam: int, cfg, device, downscale: int) -> dict[str, torch.Tensor]:
    return render_camera_for(model, split.cameras.to(device), cam, cfg, device, downscale)


def render_camera_for(model, cams, cam: int, cfg, device, downscale: int) -> dict[str, torch.Tensor]:
    """Camera ``cam`` of ``cams`` (on ``device``) rendered as evaluation does (surface-first when enabled)."""
    bg = torch.full((3,), cfg.data.eval_background, device=device)
    surface = cfg.eval.surface
    chunk = surface.chunk_rays if surface.enabled else cfg.train.chunk_rays
    return render_view(model, cams, cam, bg, RenderState(1.0, False, None, surface), chunk, downscale)


def gt_image(split, cam: int, cfg, downscale: int) -> torch.Tensor:
    img = as_float(split.images[cam])
    mask = None if split.masks is None else split.masks[cam][..., None]
    img = composite(img, mask, torch.full((3,), cfg.data.eval_background))
    if downscale > 1:
        img = torch.nn.functional.avg_pool2d(img.permute(2, 0, 1)[None], downscale)[0].permute(1, 2, 0)
    return img


def save_validation_image(model, split, cam: int, cfg, device, path: Path) -> None:
    ds = cfg.train.val_downscale
    out = render_views_for(model, split, cam, cfg, device, ds)
    gt = gt_image(split, cam, cfg, ds).to(out["rgb"])
    h, w = out["rgb"].shape[:2]
    strip = torch.cat(
        [
            gt[:h, :w],
            out["rgb"],
            normal_image(out["normal"], out["opacity"]),
            depth_image(out["depth"], out["opacity"]),
        ],
        dim=1,
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(strip)).save(path)
