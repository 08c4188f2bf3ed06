"""Write meshes back in the dataset's units and save them as PLY (binary) or OBJ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from lumisurf.data.scene import Normalization
from lumisurf.errors import LumisurfError

MESH_SUFFIXES = (".ply", ".obj", ".glb")


def mesh_to_world(mesh: trimesh.Trimesh, normalization: Normalization) -> trimesh.Trimesh:
    """Copy of ``mesh`` moved from the normalised frame to the dataset's world frame.

    ``x_world = x_norm * scale + center`` (a positive similarity, so face winding is unchanged).
    """
    out = mesh.copy()
    out.vertices = normalization.to_world(np.asarray(mesh.vertices, dtype=np.float64))
    return out


def mesh_to_normalized(mesh: trimesh.Trimesh, normalization: Normalization) -> trimesh.Trimesh:
    """Inverse of :func:`mesh_to_world`: ``x_norm = (x_world - center) / scale``."""
    out = mesh.copy()
    out.vertices = normalization.to_normalized(np.asarray(mesh.vertices, dtype=np.float64))
    return out


def save_mesh(mesh: trimesh.Trimesh, path: Path, force: bool = False) -> Path:
    """Save ``mesh`` as binary PLY, OBJ or GLB (chosen by the suffix; vertex colors kept in all three);
    returns the path written.

    Refuses to overwrite an existing file unless ``force``; creates missing parent folders.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise LumisurfError(f"{path}: unsupported mesh format '{path.suffix}' (use one of {', '.join(MESH_SUFFIXES)})")
    if path.exists() and not force:
        raise LumisurfError(f"{path} already exists; refusing to overwrite it (use --force)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".ply":
        data = trimesh.exchange.ply.export_ply(mesh, encoding="binary")
        path.write_bytes(data)
    elif suffix == ".glb":
        path.write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene(mesh)))
    else:
        path.write_text(trimesh.exchange.obj.export_obj(mesh, include_texture=False, include_color=True))
    return path
