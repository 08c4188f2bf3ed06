"""NeuS / IDR reader (DTU): ``cameras_sphere.npz`` + ``image/*.png`` + ``mask/*.png``.

For view i, ``P = world_mat_i @ scale_mat_i`` maps the NORMALISED frame to pixels with
``P[:3, :4] = K [R | t]``. We RQ-decompose it, move the camera back to the dataset's WORLD
frame with ``scale_mat = [[s,0,0,c],[0,s,0,c],[0,0,s,c],[0,0,0,1]]`` (x_world = s x_norm + c) and
record ``Normalization(center=c, scale=s, source='scale_mat')``. NeuS places pixel centres at
integer coordinates, so 0.5 is added to cx, cy (lumisurf centres are at col + 0.5).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.linalg

from lumisurf.data.readers.common import build_split, check_poses, list_images, register_reader, select_views
from lumisurf.data.scene import Normalization, SceneData
from lumisurf.errors import DataError

MAX_SKEW = 1e-2  # |K[0,1]| / fx above this is refused (the camera model has no skew)


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a 3x4 projection ``P ~ K [R | t]`` into K (3x3, positive diagonal, K[2,2] = 1) and the
    OpenCV camera-to-world 4x4 of the frame P acts on."""
    P = np.asarray(P, dtype=np.float64)[:3, :4]
    K, R = scipy.linalg.rq(P[:, :3])
    signs = np.sign(np.diag(K))
    D = np.diag(np.where(signs == 0, 1.0, signs))
    K, R = K @ D, D @ R
    p4 = P[:, 3].copy()
    if np.linalg.det(R) < 0:  # P and -P project alike; keep a proper rotation
        R, p4 = -R, -p4
    t = np.linalg.solve(K, p4)
    K = K / K[2, 2]
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ t
    return K, c2w


def check_similarity(S: np.ndarray, src: str) -> tuple[float, np.ndarray]:
    """(s, c) of ``S = [[s I, c], [0, 1]]``; DataError if S is not such a uniform scale + shift."""
    S = np.asarray(S, dtype=np.float64)
    if S.shape != (4, 4) or not np.isfinite(S).all():
        raise DataError(f"{src}: expected a finite 4x4 matrix, got shape {S.shape}")
    s = float(S[0, 0])
    lin = S[:3, :3]
    ok = s > 0 and np.allclose(lin, s * np.eye(3), rtol=0, atol=1e-6 * abs(s))
    ok = ok and np.allclose(S[3], [0, 0, 0, 1], atol=1e-9)
    if not ok:
        raise DataError(f"{src}: not a uniform scale + translation [[s,0,0,cx],[0,s,0,cy],[0,0,s,cz],[0,0,0,1]]")
    return s, S[:3, 3].copy()


def _load_npz(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"camera file not found: {path}")
    try:
        with np.load(path) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _scale(npz: dict, n: int, src: Path) -> tuple[float, np.ndarray, bool]:
    """Shared (s, c) of scale_mat_i (identity when the file has none), and whether it was given."""
    have = [f"scale_mat_{i}" in npz for i in range(n)]
    if not any(have):
        return 1.0, np.zeros(3), False
    if not all(have):
        raise DataError(f"{src}: scale_mat_{have.index(False)} missing")
    s, c = check_similarity(npz["scale_mat_0"], f"{src}: scale_mat_0")
    for i in range(1, n):
        if not np.allclose(npz[f"scale_mat_{i}"], npz["scale_mat_0"], rtol=1e-6, atol=1e-9):
            raise DataError(f"{src}: scale_mat_{i} differs from scale_mat_0 (views must share one)")
    return s, c, True


def _cameras(npz: dict, n: int, src: Path, s: float, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-frame OpenCV c2w [n, 4, 4] and intrinsics [n, 4] (fx, fy, cx, cy; +0.5 shift)."""
    S = np.diag([s, s, s, 1.0])
    S[:3, 3] = c
    c2w, intr = np.zeros((n, 4, 4)), np.zeros((n, 4))
    for i in range(n):
        P = npz[f"world_mat_{i}"].astype(np.float64) @ S
        if not np.isfinite(P).all():
            raise DataError(f"{src}: world_mat_{i} is not finite")
        K, pose = decompose_projection(P)
        if abs(K[0, 1]) > MAX_SKEW * K[0, 0]:
            raise DataError(f"{src}: world_mat_{i} has skewed intrinsics (K[0,1] = {K[0, 1]:.3g})")
        pose[:3, 3] = s * pose[:3, 3] + c
        c2w[i], intr[i] = pose, [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]
    check_poses(c2w, [f"view {i}" for i in range(n)], src)
    return c2w, intr


@register_reader("neus", markers=("cameras_sphere.npz",), priority=1)
def read_neus(root: Path, holdout_every: int = 8, max_views: int | None = None) -> SceneData:
    """Read a NeuS/IDR scene (``cameras_sphere.npz``, ``image/``, optional ``mask/``)."""
    root = Path(root)
    src = root / "cameras_sphere.npz"
    npz = _load_npz(src)
    ids = sorted(int(m.group(1)) for k in npz if (m := re.fullmatch(r"world_mat_(\d+)", k)))
    n = len(ids)
    if n == 0 or ids != list(range(n)):
        raise DataError(f"{src}: expected world_mat_0 ... world_mat_{{n-1}}, found ids {ids[:5]}...")
    files = list_images(root / "image")
    if len(files) != n:
        raise DataError(f"{src} has {n} views but {root / 'image'} holds {len(files)} images")
    mask_files = None
    if (root / "mask").is_dir():
        mask_files = list_images(root / "mask")
        if len(mask_files) != n:
            raise DataError(f"{root / 'mask'} holds {len(mask_files)} masks but there are {n} images")
    s, c, given = _scale(npz, n, src)
    c2w, intr = _cameras(npz, n, src, s, c)
    splits = {
        name: build_split(idx, files, c2w, intr, mask_files=mask_files)
        for name, idx in select_views(n, holdout_every, max_views).items()
    }
    norm = Normalization(center=tuple(float(v) for v in c), scale=s, source="scale_mat") if given else None
    return SceneData(
        name=root.name,
        root=root,
        format="neus",
        splits=splits,
        normalization=norm,
        normalized=False,
        meta={"camera_file": src},
    )
