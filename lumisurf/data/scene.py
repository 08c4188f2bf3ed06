"""Dataset containers shared by every reader: a scene is named splits of cameras + images."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras
from lumisurf.errors import DataError

if TYPE_CHECKING:
    import trimesh


@dataclass
class Normalization:
    """Similarity from the dataset's world frame to the normalised frame (object in the unit sphere).

    ``x_norm = (x_world - center) / scale``; the inverse writes meshes back in world units.
    """

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    source: str = "identity"  # how it was found: scale_mat | visual_hull | sparse_points | camera_rig | identity

    def to_normalized(self, x: np.ndarray | Tensor):
        c = np.asarray(self.center, dtype=np.float64)
        if isinstance(x, Tensor):
            return (x - torch.as_tensor(c, dtype=x.dtype, device=x.device)) / self.scale
        return (np.asarray(x) - c) / self.scale

    def to_world(self, x: np.ndarray | Tensor):
        c = np.asarray(self.center, dtype=np.float64)
        if isinstance(x, Tensor):
            return x * self.scale + torch.as_tensor(c, dtype=x.dtype, device=x.device)
        return np.asarray(x) * self.scale + c

    def to_dict(self) -> dict:
        return {"center": list(map(float, self.center)), "scale": float(self.scale), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(
            center=tuple(float(v) for v in d["center"]), scale=float(d["scale"]), source=d.get("source", "identity")
        )

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> Normalization:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class Split:
    """One split (train/test/relight) of a scene.

    images: [n, H, W, 3] uint8 (readers) or float32 in [0, 1] (the built-in scene), **sRGB**, straight color
    (``data.images.as_float`` converts one view or batch) (not composited when a mask
    exists: compose with a background at batch time). masks: [n, H, W] float32 coverage in [0, 1]
    or None. ``files``: the image path of each view (GT maps beside them are found from it).
    """

    cameras: Cameras
    images: Tensor
    masks: Tensor | None = None
    files: list[Path] = field(default_factory=list)
    normals: Tensor | None = None  # [n, H, W, 3] GT world-space unit normals (0 = no GT), or None
    depths: Tensor | None = None  # [n, H, W] GT z-depth along the optical axis, scene units (0 = none), or None

    def __len__(self) -> int:
        return len(self.cameras)

    def subset(self, idx) -> Split:
        idx = list(idx)
        return Split(
            self.cameras.subset(idx),
            self.images[idx],
            None if self.masks is None else self.masks[idx],
            [self.files[i] for i in idx] if self.files else [],
            None if self.normals is None else self.normals[idx],
            None if self.depths is None else self.depths[idx],
        )


@dataclass
class SceneData:
    """A whole scene: splits in one frame plus how that frame maps to the dataset's world.

    Readers return scenes in the dataset's **world frame** with ``normalization`` either given
    by the format (NeuS ``scale_mat``) or None; :func:`lumisurf.data.normalization.normalize_scene`
    then moves every camera into the normalised frame and records the similarity.
    """

    name: str
    root: Path
    format: str
    splits: dict[str, Split]
    normalization: Normalization | None = None
    normalized: bool = False
    gt_mesh: Path | trimesh.Trimesh | None = None  # GT surface in the dataset's world frame
    meta: dict = field(default_factory=dict)  # format-specific extras (env map names, ...)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"{self.root}: no '{name}' split (has: {', '.join(self.splits)})")
        return self.splits[name]

    def with_splits(self, splits: dict[str, Split]) -> SceneData:
        return replace(self, splits=splits)
