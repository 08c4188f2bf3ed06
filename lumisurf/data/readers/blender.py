"""Blender / NeRF-synthetic reader: ``transforms_{train,test,relight}.json`` + RGBA PNGs.

Conventions of the format: ``transform_matrix`` is an OpenGL camera-to-world (x right, y up,
looks along -z); ``f = 0.5 W / tan(0.5 camera_angle_x)``; principal point (W/2, H/2) with pixel
centres at (col + 0.5, row + 0.5) already, so no shift. Images are straight-alpha RGBA in sRGB:
color -> ``images``, alpha -> ``masks``. 16-bit ``*_normal.png`` maps next to TEST images become
``Split.normals`` (world frame); ``*_depth.npy`` z-depth maps (0 = background) next to the images of any split
become ``Split.depths``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from lumisurf.data.images import image_size, load_normal_png16
from lumisurf.data.readers.common import build_split, check_poses, even_subset, find_image, register_reader
from lumisurf.data.scene import SceneData, Split
from lumisurf.errors import DataError

SPLITS = ("train", "test", "relight")
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _frames(meta: dict, src: Path, root: Path) -> tuple[list[Path], np.ndarray]:
    """Image files and OpenCV c2w [n, 4, 4] of the frames of one transforms file."""
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{src}: no 'frames' list")
    files, mats = [], []
    for k, fr in enumerate(frames):
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise DataError(f"{src}: frame {k} lacks 'file_path' or 'transform_matrix'")
        files.append(find_image(root / fr["file_path"]))
        m = np.asarray(fr["transform_matrix"], dtype=np.float64)
        if m.shape not in ((4, 4), (3, 4)):
            raise DataError(f"{src}: frame {k} transform_matrix has shape {m.shape}, expected 4x4")
        mats.append(np.vstack([m[:3], [0.0, 0.0, 0.0, 1.0]]))
    c2w = np.stack(mats)
    check_poses(c2w, [f"frame {k} ({fr['file_path']})" for k, fr in enumerate(frames)], src)
    return files, c2w @ GL_TO_CV


def _normals(files: list[Path]) -> torch.Tensor | None:
    """GT normals [n, H, W, 3] from ``<image>_normal.png`` files (zeros where one is missing)."""
    paths = [f.with_name(f.stem + "_normal.png") for f in files]
    if not any(p.is_file() for p in paths):
        return None
    maps = [load_normal_png16(p) if p.is_file() else None for p in paths]
    shape = next(m.shape for m in maps if m is not None)
    for p, m in zip(paths, maps):
        if m is not None and m.shape != shape:
            raise DataError(f"{p}: size {m.shape[1]}x{m.shape[0]} disagrees with {shape[1]}x{shape[0]}")
    return torch.from_numpy(np.stack([m if m is not None else np.zeros(shape, np.float32) for m in maps]))


def _depths(files: list[Path], size: tuple[int, int]) -> torch.Tensor | None:
    """GT z-depth [n, H, W] from ``<image>_depth.npy`` files (zeros where one is missing), or None if none."""
    paths = [f.with_name(f.stem + "_depth.npy") for f in files]
    if not any(p.is_file() for p in paths):
        return None
    out = np.zeros((len(paths), size[1], size[0]), np.float32)
    for k, p in enumerate(paths):
        if not p.is_file():
            continue
        try:
            d = np.load(p)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {p}: {e}") from None
        if d.shape != out.shape[1:]:
            raise DataError(
                f"{p}: depth map {d.shape[1] if d.ndim > 1 else '?'}x{d.shape[0]} but images are {size[0]}x{size[1]}"
            )
        out[k] = np.nan_to_num(d.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return torch.from_numpy(out)


def _read_split(root: Path, name: str, max_views: int | None) -> tuple[Split, dict]:
    src = root / f"transforms_{name}.json"
    meta = _read_json(src)
    if "camera_angle_x" not in meta:
        raise DataError(f"{src}: missing 'camera_angle_x'")
    angle = float(meta["camera_angle_x"])
    if not (0.0 < angle < math.pi):
        raise DataError(f"{src}: camera_angle_x = {angle} is not in (0, pi)")
    files, c2w = _frames(meta, src, root)
    idx = even_subset(range(len(files)), max_views) if name == "train" else list(range(len(files)))
    w, h = image_size(files[idx[0]])
    f = 0.5 * w / math.tan(0.5 * angle)
    intr = np.tile([f, f, 0.5 * w, 0.5 * h], (len(files), 1))
    split = build_split(idx, files, c2w, intr, size=(w, h), size_what=f"the first image {files[idx[0]].name}")
    split.depths = _depths(split.files, (w, h))
    if name == "test":
        split.normals = _normals(split.files)
        if split.normals is not None and split.normals.shape[1:3] != split.images.shape[1:3]:
            raise DataError(f"{src}: normal maps and images differ in size")
    info = {k: v for k, v in meta.items() if k != "frames"}
    return split, info


@register_reader("blender", markers=("transforms_train.json",), priority=0)
def read_blender(root: Path, holdout_every: int = 8, max_views: int | None = None) -> SceneData:
    """Read a Blender/NeRF-synthetic scene; splits are the transforms files present.

    ``holdout_every`` is unused (the format has its own test split); ``max_views`` subsamples train.
    """
    root = Path(root)
    present = [s for s in SPLITS if (root / f"transforms_{s}.json").is_file()]
    if "train" not in present:
        raise DataError(f"{root}: no transforms_train.json")
    splits, info = {}, {}
    for name in present:
        splits[name], info[name] = _read_split(root, name, max_views)
    meta: dict = {"split_info": info}
    for name in present:
        if "env_map" in info[name]:
            meta["env_map" if name == "train" else f"{name}_env_map"] = info[name]["env_map"]
    if (root / "meta.json").is_file():
        meta["meta_json"] = root / "meta.json"
    gt = root / "gt_mesh.ply"
    return SceneData(
        name=root.name,
        root=root,
        format="blender",
        splits=splits,
        normalization=None,
        normalized=False,
        gt_mesh=gt if gt.is_file() else None,
        meta=meta,
    )
