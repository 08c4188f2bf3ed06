"""Automatic masks for a whole dataset (any format lumisurf reads): ``lumisurf data masks`` and
``lumisurf data process --masks auto``. Masks are PNGs named by image stem, 255 = object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lumisurf.data.cameras import Cameras
from lumisurf.data.capture.automask import auto_masks, full_size
from lumisurf.data.images import load_image_uint8
from lumisurf.data.readers import load_scene
from lumisurf.data.scene import SceneData

WORK_SIZE = 400  # auto_masks' working size (pixels, longest side)


@dataclass
class MaskReport:
    n_views: int
    size: tuple[int, int]  # (W, H) of the written masks
    coverage: float  # mean object fraction of the image
    iou: list[float] = field(default_factory=list)  # against the dataset's own masks, when it has some

    def lines(self) -> list[str]:
        out = [
            f"{self.n_views} masks of {self.size[0]}x{self.size[1]}, object covers {100 * self.coverage:.1f} % "
            "of an image on average"
        ]
        if self.iou:
            out.append(
                f"IoU against the dataset's masks: mean {np.mean(self.iou):.3f}, median "
                f"{np.median(self.iou):.3f}, worst {np.min(self.iou):.3f}"
            )
        return out


def all_views(scene: SceneData) -> tuple[Cameras, torch.Tensor, torch.Tensor | None, list[Path]]:
    """Every split's views together: cameras, images [n, H, W, 3], masks [n, H, W] or None, files."""
    splits = list(scene.splits.values())
    joined = Cameras.concatenate([s.cameras for s in splits])
    masks = None if any(s.masks is None for s in splits) else torch.cat([s.masks for s in splits])
    return joined, torch.cat([s.images for s in splits]), masks, [f for s in splits for f in s.files]


def load_downscale_for(path: Path, fmt: str) -> tuple[int, tuple[int, int]]:
    """The largest of 1, 2, 4 that keeps the images at least twice ``WORK_SIZE`` (less to decode and hold), and
    the full image size (W, H)."""
    probe = load_scene(path, format=fmt, holdout_every=0, max_views=2)
    c = next(iter(probe.splits.values())).cameras
    return next(n for n in (4, 2, 1) if max(c.width, c.height) // n >= 2 * WORK_SIZE or n == 1), (c.width, c.height)


def dataset_auto_masks(path: Path, fmt: str = "auto", progress: bool = True):
    """Masks (at ``WORK_SIZE``) for every view of the dataset at ``path``; with its files, the full image size
    (W, H) and the dataset's own masks (or None). SfM points (COLMAP ``points3D``) seed them when present."""
    n, size = load_downscale_for(path, fmt)
    scene = load_scene(path, format=fmt, holdout_every=0, downscale=n)
    cams, images, given, files = all_views(scene)
    points = scene.meta.get("points3D")
    masks = auto_masks(
        (im.numpy() for im in images),
        cams,
        points,
        max_size=WORK_SIZE,
        progress=(lambda total: tqdm(total=total, desc="auto masks", unit="view")) if progress else None,
    )
    return masks, files, size, given


def write_masks(
    masks: list[np.ndarray],
    files: list[Path],
    size: tuple[int, int],
    out: Path,
    given: torch.Tensor | None = None,
    overview_png: Path | None = None,
) -> MaskReport:
    """``out/<image stem>.png`` at the image ``size`` (W, H), a contact sheet (``overview_png``, default
    ``out/overview.png``), and the report."""
    out.mkdir(parents=True, exist_ok=True)
    for m, f in zip(masks, files):
        Image.fromarray(full_size(m, *size)).save(out / (Path(f).stem + ".png"))
    iou = []
    if given is not None:
        for m, g in zip(masks, given):
            g = full_size(g.numpy() > 0.5, m.shape[1], m.shape[0]) > 0
            iou.append(float((m & g).sum() / max((m | g).sum(), 1)))
    overview(masks, files, overview_png or out / "overview.png")
    return MaskReport(len(masks), size, float(np.mean([m.mean() for m in masks])), iou)


def overview(masks: list[np.ndarray], files: list[Path], out_png: Path, n: int = 16) -> None:
    """Up to ``n`` evenly spaced views, object kept, background darkened, in a 4-wide grid."""

    picks = np.linspace(0, len(masks) - 1, min(n, len(masks))).round().astype(int)
    tiles = []
    for i in picks:
        h, w = masks[i].shape
        rgb = np.asarray(Image.fromarray(load_image_uint8(Path(files[i]))[0][..., :3]).resize((w, h)))
        tiles.append(np.where(masks[i][..., None], rgb, rgb // 4).astype(np.uint8))
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[k : k + 4], 1) for k in range(0, len(tiles), 4)]
    Image.fromarray(np.concatenate(rows, 0)).save(out_png)
