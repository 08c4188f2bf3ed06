"""Distant lighting for Stage II and relighting: an environment map plus light bounced off the object.

Directions are world directions pointing towards the environment (normalisation only translates and
scales, so they are the same in the normalised frame); maps follow ``shading/envmap.py``'s lat-long
convention (top row = world +z).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lumisurf.data.hdr import read_hdr
from lumisurf.errors import DataError
from lumisurf.fields.material import IndirectLight
from lumisurf.shading.envmap import EnvironmentMap, downsample_envmap


class Lighting(nn.Module):
    """``radiance(x, l, blocked)``: the environment along free directions, ``indirect(x, l)`` along blocked
    ones (or 0 without an indirect model). ``indirect``: a learned :class:`IndirectLight` or any callable
    (x [M, 3], l [M, 3]) -> [M, 3] such as ``renderers.bounce.MeshBounce``."""

    def __init__(self, env: EnvironmentMap, indirect: IndirectLight | Callable | None = None):
        super().__init__()
        self.env = env
        self.indirect = indirect

    def radiance(self, x: Tensor, l: Tensor, blocked: Tensor) -> Tensor:
        """x, l [M, 3]; blocked [M] bool -> [M, 3] linear radiance."""
        out = self.env(l) * (~blocked)[:, None].to(x.dtype)
        if self.indirect is not None and bool(blocked.any()):
            idx = blocked.nonzero()[:, 0]
            out = out.index_put((idx,), self.indirect(x[idx], l[idx]), accumulate=True)
        return out


def fixed_env(img: np.ndarray | Tensor, height: int | None = None) -> EnvironmentMap:
    """A non-trainable EnvironmentMap from an HDR image [H, W, 3] (optionally area-downsampled)."""
    t = torch.as_tensor(np.asarray(img, dtype=np.float32))
    if height is not None and t.shape[0] > height:
        t = downsample_envmap(t, height, 2 * height)
    env = EnvironmentMap.from_image(t)
    for p in env.parameters():
        p.requires_grad_(False)
    return env


def find_env_file(data_path: str | Path | None, name: str) -> Path:
    """Resolve an env-map file name a dataset records: beside the dataset, in ``envmaps/`` beside or under it."""
    p = Path(name)
    if p.is_absolute() and p.exists():
        return p
    roots = (
        [] if data_path is None else [Path(data_path), Path(data_path) / "envmaps", Path(data_path).parent / "envmaps"]
    )
    for root in roots:
        if (root / name).exists():
            return root / name
    raise DataError(f"environment map '{name}' not found (looked in {[str(r) for r in roots]})")


def load_env(path: Path, height: int | None = 256) -> EnvironmentMap:
    return fixed_env(read_hdr(path), height)
