"""Helpers shared by the dataset readers: the READERS registry, pose checks, view selection
(holdout split, evenly spaced subset) and building a :class:`Split` from files + poses."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import torch

from lumisurf.data.cameras import Cameras
from lumisurf.data.images import IMAGE_EXTS, load_image_uint8, load_mask
from lumisurf.data.scene import SceneData, Split
from lumisurf.errors import DataError, DataWarning
from lumisurf.registry import Registry

# name -> reader(root: Path, holdout_every: int, max_views: int | None) -> SceneData
READERS: Registry[Callable[..., SceneData]] = Registry("dataset format")
# name -> (priority, marker files relative to the scene folder; any one of them identifies the format)
MARKERS: dict[str, tuple[int, tuple[str, ...]]] = {}


def register_reader(name: str, markers: tuple[str, ...], priority: int):
    """Register a reader under ``name`` with the files that identify its format.

    When a folder holds the markers of several formats (an LLFF scene often keeps COLMAP's ``sparse/``), the
    lowest ``priority`` wins: the more specific layout first.
    """

    def deco(fn):
        READERS.register(name)(fn)
        MARKERS[name] = (priority, tuple(markers))
        return fn

    return deco


RIGID_TOL = 1e-3
_DOWNSCALE: ContextVar[int] = ContextVar("lumisurf_load_downscale", default=1)


@contextmanager
def load_downscale(n: int):
    """Within this block readers load every image and mask at 1/``n`` resolution (``data.downscale``): the
    bottom/right remainder is cropped and ``n`` x ``n`` blocks averaged, so intrinsics scale by exactly 1/n."""
    if int(n) < 1:
        raise DataError(f"data.downscale must be >= 1, got {n}")
    token = _DOWNSCALE.set(int(n))
    try:
        yield
    finally:
        _DOWNSCALE.reset(token)


def current_downscale() -> int:
    return _DOWNSCALE.get()


def _reduce(arr: np.ndarray, n: int) -> np.ndarray:
    """[H, W(, C)] -> [H // n, W // n(, C)] block means (float32)."""
    h, w = arr.shape[0] // n, arr.shape[1] // n
    if h == 0 or w == 0:
        raise DataError(f"data.downscale={n} leaves no pixels of a {arr.shape[1]}x{arr.shape[0]} image")
    a = arr[: h * n, : w * n].astype(np.float32)
    return a.reshape(h, n, w, n, *arr.shape[2:]).mean((1, 3))


def check_poses(c2w: np.ndarray, labels: Sequence[str], source: Path | str) -> None:
    """Raise DataError unless every pose [n, >=3, 4] is finite with a proper rotation.

    A rotation is accepted when max |R^T R - I| <= 1e-3 and det(R) > 0.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    for i, label in enumerate(labels):
        m = c2w[i]
        if not np.isfinite(m).all():
            raise DataError(f"{source}: pose of {label} is not finite")
        rot = m[:3, :3]
        err = np.abs(rot.T @ rot - np.eye(3)).max()
        det = np.linalg.det(rot)
        if err > RIGID_TOL or det < 0:
            raise DataError(
                f"{source}: pose of {label} is not a rigid rotation (max |R^T R - I| = {err:.3g}, det = {det:.3g})"
            )


def holdout_split(n: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """(train, test) indices: test = every ``holdout_every``-th view from 0, train = the rest.

    ``holdout_every <= 0`` keeps no test views; train is never empty (tiny scenes train on all).
    """
    if holdout_every <= 0:
        return list(range(n)), []
    test = [i for i in range(n) if i % holdout_every == 0]
    train = [i for i in range(n) if i % holdout_every != 0]
    return (train or list(range(n))), test


def even_subset(idx: Sequence[int], max_views: int | None) -> list[int]:
    """At most ``max_views`` evenly spaced entries of ``idx`` (all of them when None)."""
    idx = list(idx)
    if max_views is None or max_views >= len(idx):
        return idx
    if max_views < 1:
        raise DataError(f"max_views must be >= 1, got {max_views}")
    pos = np.unique(np.round(np.linspace(0, len(idx) - 1, max_views)).astype(int))
    return [idx[p] for p in pos]


def select_views(n: int, holdout_every: int, max_views: int | None) -> dict[str, list[int]]:
    """Split indices for formats without their own test split: {'train': [...], 'test': [...]}."""
    train, test = holdout_split(n, holdout_every)
    out = {"train": even_subset(train, max_views)}
    if test:
        out["test"] = test
    return out


def find_image(path: Path) -> Path:
    """``path`` itself, or ``path`` + a known image extension when the file name has none."""
    if path.is_file():
        return path
    for ext in IMAGE_EXTS:
        cand = path.with_name(path.name + ext)
        if cand.is_file():
            return cand
    raise DataError(f"image file not found: {path}")


def list_images(folder: Path) -> list[Path]:
    """Sorted image files (png/jpg) directly inside ``folder``."""
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def masks_by_stem(mdir: Path, files: Sequence[Path]) -> list[Path] | None:
    """The mask of each image file in folder ``mdir``, matched by file stem (case-insensitive); None when
    there is no such folder, a DataError naming the first image without one."""
    if not mdir.is_dir():
        return None
    by_stem = {p.stem.lower(): p for p in list_images(mdir)}
    out = []
    for f in files:
        if Path(f).stem.lower() not in by_stem:
            raise DataError(f"{mdir}: no mask for image {Path(f).name}")
        out.append(by_stem[Path(f).stem.lower()])
    return out


def _check_size(path: Path, got: tuple[int, int], want: tuple[int, int], what: str) -> None:
    if got != want:
        raise DataError(f"{path}: size {got[0]}x{got[1]} disagrees with {what} {want[0]}x{want[1]}")


def load_views(
    files: Sequence[Path],
    mask_files: Sequence[Path] | None = None,
    size: tuple[int, int] | None = None,
    size_what: str = "the first image",
    mask_threshold: int = 127,
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
    """Load images [n, H, W, 3] uint8 and masks [n, H, W] float32 (mask files, else alpha when every image has it).

    ``size`` (width, height) is the expected size (from intrinsics fields); by default the
    first image's (full resolution). Returns images, masks or None, (width, height) as loaded (after
    ``load_downscale``).
    """
    images = masks = None
    no_alpha: list[Path] = []  # images without an alpha channel (masks come from alpha otherwise)
    ds = current_downscale()
    for i, f in enumerate(files):
        rgb, alpha, full = load_image_uint8(f, ds)
        got = (rgb.shape[1], rgb.shape[0])
        if size is None:
            size = full
        _check_size(f, full, size, size_what)
        if images is None:  # uint8: 100 photos of 12 MP hold 3.6 GB instead of 14 GB
            images = np.empty((len(files), got[1], got[0], 3), np.uint8)
            masks = np.empty((len(files), got[1], got[0]), np.float32)
        images[i] = rgb
        if mask_files is not None:
            m = load_mask(mask_files[i], mask_threshold)
            _check_size(mask_files[i], (m.shape[1], m.shape[0]), size, f"its image {f.name}")
            masks[i] = _reduce(m, ds) if ds > 1 else m
        elif alpha is None:
            no_alpha.append(Path(f))
        elif not no_alpha:
            if not (alpha > 0).any():
                raise DataError(f"mask (alpha channel) of {f} is empty")
            masks[i] = alpha
    if images is None:
        raise DataError("no views to load")
    keep_masks = mask_files is not None or not no_alpha
    if mask_files is None and 0 < len(no_alpha) < len(files):
        warnings.warn(
            f"{len(no_alpha)} of {len(files)} images have no alpha channel (first: {no_alpha[0]}): "
            f"this split is used WITHOUT masks; give every image an alpha channel, or mask files",
            DataWarning,
            stacklevel=2,
        )
    return (torch.from_numpy(images), torch.from_numpy(masks) if keep_masks else None, got)


def make_cameras(
    c2w: np.ndarray, fx, fy, cx, cy, width: int, height: int, distortion: np.ndarray | None = None
) -> Cameras:
    """Cameras (float32) from OpenCV c2w [n, 4, 4] and per-view (or scalar) intrinsics."""
    n = len(c2w)

    def vec(v) -> torch.Tensor:
        return torch.as_tensor(np.broadcast_to(np.asarray(v, np.float64), (n,)).copy(), dtype=torch.float32)

    dist = None
    if distortion is not None:
        distortion = np.broadcast_to(np.asarray(distortion, np.float64), (n, 4))
        if np.any(distortion != 0):
            dist = torch.as_tensor(distortion.copy(), dtype=torch.float32)
    return Cameras(
        c2w=torch.as_tensor(np.asarray(c2w), dtype=torch.float32),
        fx=vec(fx),
        fy=vec(fy),
        cx=vec(cx),
        cy=vec(cy),
        width=int(width),
        height=int(height),
        distortion=dist,
    )


def build_split(
    idx: Sequence[int],
    files: Sequence[Path],
    c2w: np.ndarray,
    intr: np.ndarray,
    distortion: np.ndarray | None = None,
    mask_files: Sequence[Path] | None = None,
    size: tuple[int, int] | None = None,
    size_what: str = "the first image",
) -> Split:
    """A Split of views ``idx``: c2w [N, 4, 4] OpenCV, intr [N, 4] = fx, fy, cx, cy in pixels."""
    idx = list(idx)
    sel_files = [files[i] for i in idx]
    sel_masks = None if mask_files is None else [mask_files[i] for i in idx]
    images, masks, (w, h) = load_views(sel_files, sel_masks, size, size_what)
    intr = np.asarray(intr, np.float64)[idx] / current_downscale()  # pixel corners at 0: exact for n x n blocks
    dist = None if distortion is None else np.asarray(distortion, np.float64)[idx]
    cams = make_cameras(np.asarray(c2w)[idx], intr[:, 0], intr[:, 1], intr[:, 2], intr[:, 3], w, h, dist)
    return Split(cameras=cams, images=images, masks=masks, files=sel_files)
