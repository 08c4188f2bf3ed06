"""instant-ngp reader: one ``transforms.json`` with explicit intrinsics and distortion.

Intrinsics ``fl_x, fl_y, cx, cy, w, h`` and distortion ``k1, k2, p1, p2`` may be top-level or
per frame (per-frame wins). ``transform_matrix`` is an OpenGL/NeRF camera-to-world (-z look,
y up), converted to OpenCV. Pixel convention: instant-ngp generates rays through
``(pixel + 0.5) / resolution`` relative to the principal point ``cx / w``, i.e. ``cx, cy`` are
continuous pixel coordinates with pixel centres at +0.5 -- exactly lumisurf's convention, so they
are used as given (no shift). Distortion is modelled by :class:`Cameras`; images are not resampled.
Object masks: a per-frame ``mask_path`` (nerfstudio's key; white = object), else a ``masks/`` folder matched
by file stem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lumisurf.data.images import image_size
from lumisurf.data.readers.common import (
    build_split,
    check_poses,
    find_image,
    masks_by_stem,
    register_reader,
    select_views,
)
from lumisurf.data.scene import SceneData
from lumisurf.errors import DataError

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
DIST_KEYS = ("k1", "k2", "p1", "p2")


def _get(frame: dict, top: dict, key: str):
    return frame[key] if key in frame else top.get(key)


def _intrinsics(frame: dict, top: dict, img: Path, src: Path, label: str) -> tuple[list[float], tuple[int, int]]:
    """[fx, fy, cx, cy] and (w, h) of one frame; w/h fields are checked against the image file."""
    iw, ih = image_size(img)
    w, h = _get(frame, top, "w"), _get(frame, top, "h")
    if (w is not None and int(w) != iw) or (h is not None and int(h) != ih):
        raise DataError(f"{img}: size {iw}x{ih} disagrees with w x h = {w} x {h} in {src} ({label})")
    fx, fy = _get(frame, top, "fl_x"), _get(frame, top, "fl_y")
    if fx is None:
        ax = _get(frame, top, "camera_angle_x")
        if ax is None:
            raise DataError(f"{src}: {label} has neither 'fl_x' nor 'camera_angle_x'")
        fx = 0.5 * iw / math.tan(0.5 * float(ax))
    if fy is None:
        ay = _get(frame, top, "camera_angle_y")
        fy = fx if ay is None else 0.5 * ih / math.tan(0.5 * float(ay))
    cx, cy = _get(frame, top, "cx"), _get(frame, top, "cy")
    vals = [float(fx), float(fy), 0.5 * iw if cx is None else float(cx), 0.5 * ih if cy is None else float(cy)]
    if not all(map(math.isfinite, vals)) or vals[0] <= 0 or vals[1] <= 0:
        raise DataError(f"{src}: {label} has invalid intrinsics {vals}")
    return vals, (iw, ih)


def _mask_files(frames: list[dict], root: Path, src: Path, files: list[Path]) -> list[Path] | None:
    """Every frame's ``mask_path`` (all or none of them), else ``masks/<image stem>.*``, else None."""
    given = [fr.get("mask_path") for fr in frames]
    if any(given):
        missing = [k for k, m in enumerate(given) if not m]
        if missing:
            raise DataError(
                f"{src}: {len(missing)} frame(s) lack 'mask_path' (first: frame {missing[0]}) while "
                f"others have one; give every frame a mask or none"
            )
        return [find_image(root / m) for m in given]
    return masks_by_stem(root / "masks", files)


@register_reader("ngp", markers=("transforms.json",), priority=3)
def read_ngp(root: Path, holdout_every: int = 8, max_views: int | None = None) -> SceneData:
    """Read an instant-ngp scene (``transforms.json``; a missing image file is a DataError)."""
    root = Path(root)
    src = root / "transforms.json"
    try:
        top = json.loads(src.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {src}: {e}") from None
    frames = top.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{src}: no 'frames' list")
    files, mats, intr, dist, size = [], [], [], [], None
    for k, fr in enumerate(frames):
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise DataError(f"{src}: frame {k} lacks 'file_path' or 'transform_matrix'")
        label = f"frame {k} ({fr['file_path']})"
        files.append(find_image(root / fr["file_path"]))
        m = np.asarray(fr["transform_matrix"], dtype=np.float64)
        if m.shape not in ((4, 4), (3, 4)):
            raise DataError(f"{src}: {label} transform_matrix has shape {m.shape}, expected 4x4")
        mats.append(np.vstack([m[:3], [0.0, 0.0, 0.0, 1.0]]))
        vals, fsize = _intrinsics(fr, top, files[-1], src, label)
        if size is not None and fsize != size:
            raise DataError(
                f"{files[-1]}: size {fsize[0]}x{fsize[1]} disagrees with the first image {size[0]}x{size[1]}"
            )
        size = fsize
        intr.append(vals)
        dist.append([float(_get(fr, top, key) or 0.0) for key in DIST_KEYS])
        for key in ("k3", "k4", "is_fisheye"):
            if _get(fr, top, key):
                raise DataError(f"{src}: {label} uses '{key}', which lumisurf's camera model lacks")
    c2w = np.stack(mats)
    check_poses(c2w, [f"frame {k} ({fr['file_path']})" for k, fr in enumerate(frames)], src)
    c2w = c2w @ GL_TO_CV
    dist_arr = np.asarray(dist)
    if not np.isfinite(dist_arr).all():
        raise DataError(f"{src}: distortion coefficients are not finite")
    masks = _mask_files(frames, root, src, files)
    splits = {
        name: build_split(idx, files, c2w, np.asarray(intr), distortion=dist_arr, mask_files=masks, size=size)
        for name, idx in select_views(len(files), holdout_every, max_views).items()
    }
    meta = {k: v for k, v in top.items() if k not in ("frames",)}
    return SceneData(
        name=root.name, root=root, format="ngp", splits=splits, normalization=None, normalized=False, meta=meta
    )
