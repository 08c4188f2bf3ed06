"""COLMAP reader: ``sparse/0/`` (or ``sparse/``) with cameras/images as ``.txt`` or ``.bin``, photos in ``images/``.

COLMAP image poses are world-to-camera ``(qw, qx, qy, qz, tx, ty, tz)`` in the OpenCV camera
convention. COLMAP puts the centre of the top-left pixel at (0.5, 0.5) -- lumisurf's convention --
so ``cx, cy`` are used without a shift. Supported camera models: SIMPLE_PINHOLE, PINHOLE,
SIMPLE_RADIAL, RADIAL, OPENCV (distortion mapped to k1, k2, p1, p2). Object masks, when present, are in
``masks/`` (matched by file stem, white = object; ``lumisurf data process --masks`` writes them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumisurf.data.readers.common import (
    build_split,
    check_poses,
    current_downscale,
    load_downscale,
    masks_by_stem,
    register_reader,
    select_views,
)
from lumisurf.data.scene import SceneData
from lumisurf.errors import DataError

# model id -> (name, number of params), as in COLMAP's camera_models.h
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass
class ColmapCamera:
    model: str
    width: int
    height: int
    params: np.ndarray  # [n_params] float64, COLMAP order


@dataclass
class ColmapImage:
    qvec: np.ndarray  # [4] qw, qx, qy, qz (world-to-camera)
    tvec: np.ndarray  # [3]
    camera_id: int
    name: str


def _lines(path: Path) -> list[str]:
    try:
        return [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    """``CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]`` per line."""
    cams = {}
    for _k, ln in enumerate(_lines(path)):
        tok = ln.split()
        if not tok:
            continue
        try:
            cid, model, w, h = int(tok[0]), tok[1], int(tok[2]), int(tok[3])
            params = np.array([float(v) for v in tok[4:]])
        except (ValueError, IndexError):
            raise DataError(f"{path}: cannot parse camera line '{ln.strip()}'") from None
        if model in MODEL_IDS and len(params) != MODEL_IDS[model][1]:
            raise DataError(f"{path}: camera {cid} ({model}) has {len(params)} params, expected {MODEL_IDS[model][1]}")
        cams[cid] = ColmapCamera(model, w, h, params)
    return cams


def read_images_txt(path: Path) -> dict[int, ColmapImage]:
    """Two lines per image: ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` then (possibly empty) points."""
    lines, images, i = _lines(path), {}, 0
    while i < len(lines):
        tok = lines[i].split()
        if not tok:
            i += 1
            continue
        try:
            iid, q, t, cid = int(tok[0]), tok[1:5], tok[5:8], int(tok[8])
            name = " ".join(tok[9:])
            images[iid] = ColmapImage(np.array(q, float), np.array(t, float), cid, name)
        except (ValueError, IndexError):
            raise DataError(f"{path}: cannot parse image line '{lines[i].strip()}'") from None
        if not name:
            raise DataError(f"{path}: image {iid} has no file name")
        i += 2
    return images


class _Reader:
    """Little-endian struct reader over bytes that turns truncation into a DataError."""

    def __init__(self, path: Path):
        try:
            self.data, self.pos, self.path = path.read_bytes(), 0, path
        except OSError as e:
            raise DataError(f"cannot read {path}: {e}") from None

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise DataError(f"{self.path}: file is truncated at byte {self.pos}")
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def cstring(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise DataError(f"{self.path}: file is truncated (unterminated image name)")
        s = self.data[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    """uint64 count; per camera int32 id, int32 model id, uint64 width, uint64 height, double params[]."""
    r, cams = _Reader(path), {}
    (count,) = r.read("Q")
    for _ in range(count):
        cid, mid, w, h = r.read("iiQQ")
        if mid not in CAMERA_MODELS:
            raise DataError(f"{path}: camera {cid} has unknown model id {mid}")
        name, n = CAMERA_MODELS[mid]
        cams[cid] = ColmapCamera(name, int(w), int(h), np.array(r.read(f"{n}d")))
    return cams


def read_images_bin(path: Path) -> dict[int, ColmapImage]:
    """uint64 count; per image int32 id, 7 doubles (q, t), int32 camera id, name\\0, uint64 n, n x (x, y, id)."""
    r, images = _Reader(path), {}
    (count,) = r.read("Q")
    for _ in range(count):
        iid, *qt, cid = r.read("i7di")
        name = r.cstring()
        (n_pts,) = r.read("Q")
        r.read(f"{n_pts * 24}x")  # skip the 2D points (x, y: double, point3D id: int64)
        images[iid] = ColmapImage(np.array(qt[:4]), np.array(qt[4:]), cid, name)
    return images


def read_points3d_bin(path: Path) -> np.ndarray:
    """uint64 count; per point uint64 id, 3 doubles xyz, 3 uint8 rgb, double error, uint64 track length n,
    n x (int32 image id, int32 point2D index). Returns xyz [N, 3] float64."""
    r = _Reader(path)
    (count,) = r.read("Q")
    xyz = np.empty((count, 3))
    for k in range(count):
        _, *p, _, _, _, _ = r.read("Q3d3Bd")
        (n_track,) = r.read("Q")
        r.read(f"{n_track * 8}x")
        xyz[k] = p
    return xyz


def read_points3d_txt(path: Path) -> np.ndarray:
    """``POINT3D_ID X Y Z R G B ERROR TRACK[]`` per line -> xyz [N, 3] float64."""
    try:
        rows = [[float(v) for v in ln.split()[1:4]] for ln in _lines(path) if ln.strip()]
    except ValueError:
        raise DataError(f"{path}: cannot parse a point line") from None
    return np.asarray(rows, np.float64).reshape(-1, 3)


def read_points3d(folder: Path) -> np.ndarray | None:
    """The model's sparse points [N, 3] (world units), or None when the model has no points3D file."""
    if (folder / "points3D.bin").is_file():
        return read_points3d_bin(folder / "points3D.bin")
    if (folder / "points3D.txt").is_file():
        return read_points3d_txt(folder / "points3D.txt")
    return None


def qvec_to_rotation(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of the quaternion (qw, qx, qy, qz), normalised first."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def camera_intrinsics(cam: ColmapCamera, cid: int) -> tuple[list[float], list[float]]:
    """([fx, fy, cx, cy], [k1, k2, p1, p2]) of a supported COLMAP camera."""
    p = [float(v) for v in cam.params]
    if cam.model == "SIMPLE_PINHOLE":
        return [p[0], p[0], p[1], p[2]], [0.0] * 4
    if cam.model == "PINHOLE":
        return p[:4], [0.0] * 4
    if cam.model == "SIMPLE_RADIAL":
        return [p[0], p[0], p[1], p[2]], [p[3], 0.0, 0.0, 0.0]
    if cam.model == "RADIAL":
        return [p[0], p[0], p[1], p[2]], [p[3], p[4], 0.0, 0.0]
    if cam.model == "OPENCV":
        return p[:4], p[4:8]
    raise DataError(f"COLMAP camera {cid} uses model {cam.model}; supported: {', '.join(SUPPORTED)}")


def model_folder(root: Path) -> Path:
    """``sparse/0`` or ``sparse`` holding cameras.{bin,txt} and images.{bin,txt}."""
    for d in (root / "sparse" / "0", root / "sparse"):
        if any((d / f"cameras.{e}").is_file() for e in ("bin", "txt")):
            return d
    raise DataError(f"{root}: no COLMAP model (sparse/0/cameras.bin|txt or sparse/cameras.bin|txt)")


def read_model(folder: Path) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage]]:
    """Parse cameras and images of a COLMAP model folder (.bin preferred when both exist)."""
    for ext, rc, ri in (("bin", read_cameras_bin, read_images_bin), ("txt", read_cameras_txt, read_images_txt)):
        if (folder / f"cameras.{ext}").is_file():
            if not (folder / f"images.{ext}").is_file():
                raise DataError(f"{folder}: cameras.{ext} without images.{ext}")
            return rc(folder / f"cameras.{ext}"), ri(folder / f"images.{ext}")
    raise DataError(f"{folder}: no cameras.bin or cameras.txt")


@register_reader(
    "colmap",
    markers=("sparse/0/cameras.bin", "sparse/0/cameras.txt", "sparse/cameras.bin", "sparse/cameras.txt"),
    priority=4,
)
def read_colmap(root: Path, holdout_every: int = 8, max_views: int | None = None) -> SceneData:
    """Read a COLMAP reconstruction; views sorted by image name."""
    root = Path(root)
    folder = model_folder(root)
    cams, images = read_model(folder)
    if not images:
        raise DataError(f"{folder}: the model has no registered images")
    views = sorted(images.values(), key=lambda im: im.name)
    n = len(views)
    c2w, intr, dist, files = np.zeros((n, 4, 4)), np.zeros((n, 4)), np.zeros((n, 4)), []
    size = None
    for i, im in enumerate(views):
        if im.camera_id not in cams:
            raise DataError(f"{folder}: image {im.name} refers to missing camera {im.camera_id}")
        cam = cams[im.camera_id]
        intr[i], dist[i] = camera_intrinsics(cam, im.camera_id)
        if size is not None and (cam.width, cam.height) != size:
            raise DataError(
                f"{folder}: camera {im.camera_id} is {cam.width}x{cam.height} but others are "
                f"{size[0]}x{size[1]} (all views must share one size)"
            )
        size = (cam.width, cam.height)
        if not (np.isfinite(im.qvec).all() and np.linalg.norm(im.qvec) > 0 and np.isfinite(im.tvec).all()):
            raise DataError(f"{folder}: pose of image {im.name} is not finite")
        rot = qvec_to_rotation(im.qvec)
        c2w[i, :3, :3], c2w[i, :3, 3], c2w[i, 3, 3] = rot.T, -rot.T @ im.tvec, 1.0
        files.append(root / "images" / im.name)
    check_poses(c2w, [f"image {im.name}" for im in views], folder)
    masks = masks_by_stem(root / "masks", files)
    ds = current_downscale()
    if ds > 1 and (root / f"images_{ds}").is_dir() and masks is None:  # `data process` wrote 1/ds copies
        files = [root / f"images_{ds}" / f.name for f in files]
        intr, size = intr / ds, (size[0] // ds, size[1] // ds)
        ds = 1
    with load_downscale(ds):
        splits = {
            name: build_split(
                idx,
                files,
                c2w,
                intr,
                distortion=dist,
                mask_files=masks,
                size=size,
                size_what="the COLMAP camera size (divided by data.downscale)",
            )
            for name, idx in select_views(n, holdout_every, max_views).items()
        }
    meta = {"model_folder": folder}
    points = read_points3d(folder)
    if points is not None and len(points):
        meta["points3D"] = points  # world units; normalisation 'sparse_points' puts them in the unit sphere
    return SceneData(
        name=root.name, root=root, format="colmap", splits=splits, normalization=None, normalized=False, meta=meta
    )
