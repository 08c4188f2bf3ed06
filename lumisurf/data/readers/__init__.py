"""Dataset readers: detect a scene's on-disk format and load it as :class:`SceneData`.

Every reader returns the scene in the dataset's own WORLD frame with OpenCV cameras
(see :mod:`lumisurf.data.cameras`), ``normalized=False`` and ``normalization`` set only when
the format defines one (NeuS ``scale_mat``). Formats without a test split hold out every
``holdout_every``-th view (indices 0, k, 2k, ...) as 'test'.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lumisurf.data.readers import blender, colmap, llff, neus, ngp  # noqa: F401  (register readers)
from lumisurf.data.readers.common import MARKERS, READERS, load_downscale
from lumisurf.data.scene import SceneData
from lumisurf.errors import DataError

__all__ = ["MARKERS", "READERS", "detect_format", "load_scene"]


def detect_format(path: Path) -> str:
    """The registered format whose marker files are in folder ``path`` (lowest priority first)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"dataset folder not found: {path}")
    ordered = sorted(MARKERS.items(), key=lambda item: item[1][0])
    for fmt, (_, markers) in ordered:
        if any((path / m).is_file() for m in markers):
            return fmt
    looked = "; ".join(f"{fmt}: {' or '.join(m)}" for fmt, (_, m) in ordered)
    raise DataError(f"cannot detect the dataset format of {path}; looked for {looked}")


def _pool_maps(split, n: int):
    """GT normal / depth maps of a split loaded at 1/n: block means (normals renormalised; a depth block with
    any background pixel is background), cropped like the images."""
    h, w = split.images.shape[1:3]
    if split.normals is not None and split.normals.shape[1:3] != (h, w):
        nm = F.avg_pool2d(split.normals[:, : h * n, : w * n].permute(0, 3, 1, 2), n).permute(0, 2, 3, 1)
        split.normals = nm / nm.norm(dim=-1, keepdim=True).clamp_min(1e-8) * (nm.norm(dim=-1, keepdim=True) > 1e-3)
    if split.depths is not None and split.depths.shape[1:3] != (h, w):
        d = split.depths[:, : h * n, : w * n]
        valid = F.avg_pool2d((d > 0).float()[:, None], n)[:, 0] > 0.999
        split.depths = torch.where(valid, F.avg_pool2d(d[:, None], n)[:, 0], torch.zeros(()))
    return split


def load_scene(
    path, format: str = "auto", holdout_every: int = 8, max_views: int | None = None, downscale: int = 1
) -> SceneData:
    """Load the scene in folder ``path`` (a file inside it is accepted too).

    format: 'auto' or a registered reader name. holdout_every: test = views 0, k, 2k, ... for
    formats without their own test split. max_views: keep at most this many evenly spaced
    train views (quick runs). downscale: load images, masks and GT maps at 1/N resolution (intrinsics
    scaled; COLMAP's ``images_N/`` copies are read when present).
    """
    path = Path(path)
    if path.is_file():
        path = path.parent
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in READERS:
        raise DataError(f"unknown dataset format '{fmt}'; choose 'auto' or one of {READERS.names()}")
    with load_downscale(downscale):
        scene = READERS.get(fmt)(path, holdout_every=holdout_every, max_views=max_views)
    if downscale > 1:
        scene.splits = {k: _pool_maps(s, downscale) for k, s in scene.splits.items()}
    return scene
