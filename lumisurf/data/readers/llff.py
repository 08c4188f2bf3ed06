"""LLFF reader: ``poses_bounds.npy`` + ``images_N/`` (+ optional ``masks_N/``).

Each row (sorted image-name order) is a flattened 3x5 ``[R | t | hwf]`` followed by near, far.
The rotation columns are (down, right, backwards); the OpenGL camera-to-world is
``[col1, -col0, col2, t]``, converted here to OpenCV. ``hwf`` is for the full-resolution images:
factor = full h / actual h, f = hwf[2] / factor, principal point = image centre (W/2, H/2).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lumisurf.data.images import image_size
from lumisurf.data.readers.common import (
    build_split,
    check_poses,
    list_images,
    masks_by_stem,
    register_reader,
    select_views,
)
from lumisurf.data.scene import SceneData
from lumisurf.errors import DataError

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def image_folder(root: Path) -> Path:
    """``images_8`` if present, else the ``images_N`` with the largest N, else ``images``."""
    if (root / "images_8").is_dir():
        return root / "images_8"
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := re.fullmatch(r"images_(\d+)", p.name))
    ]
    if found:
        return max(found)[1]
    if (root / "images").is_dir():
        return root / "images"
    raise DataError(f"{root}: no images_8/, images_N/ or images/ folder next to poses_bounds.npy")


def llff_to_opencv(poses: np.ndarray) -> np.ndarray:
    """LLFF [n, 3, >=4] (columns down, right, backwards, t) -> OpenCV c2w [n, 4, 4]."""
    gl = np.zeros((len(poses), 4, 4))
    gl[:, :3, 0] = poses[:, :, 1]
    gl[:, :3, 1] = -poses[:, :, 0]
    gl[:, :3, 2] = poses[:, :, 2]
    gl[:, :3, 3] = poses[:, :, 3]
    gl[:, 3, 3] = 1.0
    return gl @ GL_TO_CV


def _mask_files(root: Path, folder: Path, files: list[Path]) -> list[Path] | None:
    """Masks in ``masks_N`` (same suffix as the image folder), matched by file stem."""
    return masks_by_stem(root / folder.name.replace("images", "masks", 1), files)


def _load_rows(src: Path) -> np.ndarray:
    if not src.is_file():
        raise DataError(f"camera file not found: {src}")
    try:
        arr = np.load(src)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {src}: {e}") from None
    if arr.ndim != 2 or arr.shape[1] != 17:
        raise DataError(f"{src}: expected shape [n, 17], got {list(arr.shape)}")
    return arr.astype(np.float64)


@register_reader("llff", markers=("poses_bounds.npy",), priority=2)
def read_llff(root: Path, holdout_every: int = 8, max_views: int | None = None) -> SceneData:
    """Read an LLFF scene (``poses_bounds.npy``, downsampled ``images_N/``, optional ``masks_N/``)."""
    root = Path(root)
    src = root / "poses_bounds.npy"
    rows = _load_rows(src)
    folder = image_folder(root)
    files = list_images(folder)
    n = len(files)
    if len(rows) != n:
        raise DataError(f"{src} has {len(rows)} rows but {folder} holds {n} images")
    poses = rows[:, :15].reshape(n, 3, 5)
    bounds = rows[:, 15:]
    c2w = llff_to_opencv(poses)
    check_poses(c2w, [f"row {i} ({f.name})" for i, f in enumerate(files)], src)
    h_full, w_full, f_full = poses[0, :, 4]
    if not np.isfinite(poses[:, :, 4]).all() or np.ptp(poses[:, :, 4], axis=0).max() > 1e-6 * abs(f_full):
        raise DataError(f"{src}: hwf must be finite and the same for every row")
    w, h = image_size(files[0])
    factor = h_full / h
    if abs(w_full / w - factor) > 1e-2 * factor:
        raise DataError(f"{files[0]}: size {w}x{h} is not a uniform downscale of hwf {w_full:g}x{h_full:g}")
    intr = np.tile([f_full / factor, f_full / factor, 0.5 * w, 0.5 * h], (n, 1))
    masks = _mask_files(root, folder, files)
    splits = {
        name: build_split(
            idx, files, c2w, intr, mask_files=masks, size=(w, h), size_what=f"the first image {files[0].name}"
        )
        for name, idx in select_views(n, holdout_every, max_views).items()
    }
    meta = {
        "near": float(bounds[:, 0].min()),
        "far": float(bounds[:, 1].max()),
        "bounds": bounds.tolist(),
        "factor": float(factor),
        "image_folder": folder.name,
    }
    return SceneData(
        name=root.name, root=root, format="llff", splits=splits, normalization=None, normalized=False, meta=meta
    )
