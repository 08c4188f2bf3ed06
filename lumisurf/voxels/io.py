"""Import and export of a sparse voxel set.

* ``voxels.pt`` (torch, loads with ``weights_only=True``): ``format``, ``mode``, ``sh_bands``, ``scene_min``
  ``[3]`` and ``extent`` of the root cube (normalised frame), ``path`` / ``level`` ``[N]`` (octree leaves),
  ``geo`` ``[M]`` (corner values), ``vox_key`` ``[N, 8]`` (each voxel's corners), ``sh0`` ``[N, 1, 3]``,
  ``shs`` ``[N, B^2 - 1, 3]``, ``inv_s``, and ``to_world`` ``[4, 4]`` (normalised -> dataset frame) when known.
  :func:`load_voxels` gives back a trainable model (``voxels.model.init_from`` starts a run from one).
* ``voxels.ply``: one vertex per voxel at its centre (dataset frame when ``to_world`` is given), with ``size``
  (edge length, same frame), ``level``, the SH DC color as sRGB-ish 8-bit ``red green blue`` (``sh0 + 0.5``
  clipped, SVRaster's view-independent color), ``geo_mean`` (mean corner value), for point-cloud viewers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lumisurf.encodings.spherical_harmonics import SH_C0
from lumisurf.errors import LumisurfError
from lumisurf.mesh.ply import write_ply
from lumisurf.voxels.model import SparseVoxelModel
from lumisurf.voxels.structure import VoxelOctree

FORMAT = "lumisurf-voxels-1"


def save_voxels(model: SparseVoxelModel, path: Path, to_world: torch.Tensor | None = None) -> Path:
    tree = model.tree
    state = {
        "format": FORMAT,
        "mode": model.mode,
        "sh_bands": model.sh_bands,
        "scene_min": tree.scene_min.cpu(),
        "extent": float(tree.extent),
        "path": tree.path.cpu(),
        "level": tree.level.cpu(),
        "geo": model.geo.detach().cpu(),
        "vox_key": tree.vox_key.cpu(),
        "sh0": model.sh0.detach().cpu(),
        "shs": model.shs.detach().cpu(),
        "inv_s": float(model.inv_s.detach()),
    }
    if to_world is not None:
        state["to_world"] = to_world.detach().cpu().float()
    torch.save(state, path)
    return Path(path)


def load_voxels(path: Path, device="cpu") -> SparseVoxelModel:
    """A model from :func:`save_voxels`' file (clear errors for other files)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise LumisurfError(f"cannot read the voxel file {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LumisurfError(f"{path} is not a lumisurf voxel export (format {FORMAT})")
    tree = VoxelOctree(state["path"], state["level"], state["scene_min"], state["extent"])
    model = SparseVoxelModel(
        tree, mode=state["mode"], sh_bands=state["sh_bands"], geo_init=state["geo"], inv_s=state["inv_s"]
    )
    with torch.no_grad():
        model.sh0.copy_(state["sh0"])
        model.shs.copy_(state["shs"])
    return model


def write_voxel_ply(model: SparseVoxelModel, path: Path, to_world: torch.Tensor | None = None) -> Path:
    """Voxel centres with size, level, DC color and mean corner value (see the module doc)."""
    centre, size = model.tree.centres().detach().cpu(), model.tree.boxes()[1].detach().cpu()
    if to_world is not None:
        m = to_world.detach().cpu().float()
        centre = centre @ m[:3, :3].T + m[:3, 3]
        size = size * m[:3, :3].det().abs() ** (1.0 / 3.0)
    rgb = ((model.sh0.detach().cpu()[:, 0] * SH_C0 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    geo = model.corners().detach().cpu().mean(-1)
    cols = [(c, centre[:, i].numpy().astype(np.float32)) for i, c in enumerate("xyz")]
    cols += [("size", size.numpy().astype(np.float32)), ("level", model.tree.level.cpu().numpy().astype(np.int32))]
    cols += [(c, rgb[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    cols += [("geo_mean", geo.numpy().astype(np.float32))]
    return write_ply(path, cols, comments=[f"lumisurf sparse voxels ({model.mode}): one vertex per voxel centre"])
