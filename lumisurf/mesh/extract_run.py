"""``lumisurf extract RUN``: marching cubes of the trained SDF, written in the dataset's world frame."""
from __future__ import annotations

from pathlib import Path

from lumisurf.mesh.export import mesh_to_world, save_mesh
from lumisurf.mesh.marching_cubes import extract_mesh


def extract_run(loaded, resolution: int | None = None, force: bool = False, progress: bool = True) -> Path:
    """Extract ``RUN/mesh.ply`` from a :class:`lumisurf.train.restore.LoadedRun`; returns its path.

    An existing mesh is only replaced with ``force`` (checked before any work).
    """
    if loaded.run.mesh_path.exists() and not force:
        from lumisurf.errors import LumisurfError

        raise LumisurfError(f"{loaded.run.mesh_path} exists; pass --force to replace it")
    res = resolution or loaded.cfg.eval.mesh_resolution
    sdf = loaded.model.sdf
    mesh = extract_mesh(lambda x: sdf.sdf(x), resolution=res, bound=1.0, device=loaded.device,
                        progress=progress)
    mesh = mesh_to_world(mesh, loaded.normalization)
    return save_mesh(mesh, loaded.run.mesh_path, force=force)
