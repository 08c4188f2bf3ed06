"""Dataset readers: detect a scene's on-disk format and load it as :class:`SceneData`.

Every reader returns the scene in the dataset's own WORLD frame with OpenCV cameras
(see :mod:`lumisurf.data.cameras`), ``normalized=False`` and ``normalization`` set only when
the format defines one (NeuS ``scale_mat``). Formats without a test split hold out every
``holdout_every``-th view (indices 0, k, 2k, ...) as 'test'.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from lumisurf.data.readers import blender, colmap, llff, neus, ngp  # noqa: F401  (register readers)
from lumisurf.data.readers.common import READERS
from lumisurf.data.scene import SceneData
from lumisurf.errors import DataError

# (format, marker files relative to the scene folder; any one of them identifies the format)
_MARKERS: list[tuple[str, tuple[str, ...]]] = [
    ("blender", ("transforms_train.json",)),
    ("neus", ("cameras_sphere.npz",)),
    ("llff", ("poses_bounds.npy",)),
    ("ngp", ("transforms.json",)),
    ("colmap", ("sparse/0/cameras.bin", "sparse/0/cameras.txt", "sparse/cameras.bin", "sparse/cameras.txt")),
]

__all__ = ["READERS", "detect_format", "load_scene"]


def detect_format(path: Path) -> str:
    """'blender' | 'neus' | 'llff' | 'ngp' | 'colmap' from the marker files in folder ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"dataset folder not found: {path}")
    for fmt, markers in _MARKERS:
        if any((path / m).is_file() for m in markers):
            return fmt
    looked = "; ".join(f"{fmt}: {' or '.join(m)}" for fmt, m in _MARKERS)
    raise DataError(f"cannot detect the dataset format of {path}; looked for {looked}")


def load_scene(path, format: str = "auto", holdout_every: int = 8,
               max_views: Optional[int] = None) -> SceneData:
    """Load the scene in folder ``path`` (a file inside it is accepted too).

    format: 'auto' or a registered reader name. holdout_every: test = views 0, k, 2k, ... for
    formats without their own test split. max_views: keep at most this many evenly spaced
    train views (quick runs).
    """
    path = Path(path)
    if path.is_file():
        path = path.parent
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in READERS:
        raise DataError(f"unknown dataset format '{fmt}'; choose 'auto' or one of {READERS.names()}")
    return READERS.get(fmt)(path, holdout_every=holdout_every, max_views=max_views)
