"""``lumisurf extract RUN``: marching cubes of the trained SDF, written in the dataset's world frame.

Sparse-voxel runs also get ``RUN/voxels.pt`` and ``RUN/voxels.ply`` (the voxel set, :mod:`lumisurf.voxels.io`);
density voxels are meshed through TSDF fusion of the training views' median depth.

Runs with NeRO or segmented shading also get ``RUN/mesh_materials.ply``: the same mesh with the Stage I
materials per vertex (albedo, metallic, roughness) and, with a material assignment, ``material_prob_k``
and ``material_id`` per vertex.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lumisurf.data.load import load_scene_normalized_as
from lumisurf.errors import LumisurfError
from lumisurf.mesh.export import mesh_to_world, save_mesh
from lumisurf.mesh.marching_cubes import extract_mesh
from lumisurf.mesh.material_export import write_material_ply
from lumisurf.voxels.io import save_voxels, write_voxel_ply
from lumisurf.voxels.model import SparseVoxelModel
from lumisurf.voxels.structure import VoxelOctree


def extract_run(
    loaded,
    resolution: int | None = None,
    force: bool = False,
    progress: bool = True,
    formats: tuple[str, ...] = ("ply",),
) -> Path:
    """Extract ``RUN/mesh.ply`` (vertex colors: the radiance seen along the normal) from a
    :class:`lumisurf.jobs.restore.LoadedRun`, plus ``RUN/mesh.<fmt>`` for the other ``formats`` (glb, obj);
    returns the PLY's path.

    An existing mesh is only replaced with ``force`` (checked before any work). With ``eval.fill_unseen``
    (the default) the outside space that no training camera sees is made solid first: pockets behind the
    surface would otherwise leave internal walls in the mesh (:mod:`lumisurf.mesh.visibility`).
    """
    if loaded.run.mesh_path.exists() and not force:
        raise LumisurfError(f"{loaded.run.mesh_path} exists; pass --force to replace it")
    res = resolution or loaded.cfg.eval.mesh_resolution
    model = loaded.model
    if model.stores_voxels:
        export_voxels(loaded)
    cams = training_cameras(loaded) if loaded.cfg.eval.fill_unseen or model.surface_needs_cameras else None
    surface = model.surface_function(cams, res, progress)
    cams = cams if loaded.cfg.eval.fill_unseen else None
    mesh = extract_mesh(surface, resolution=res, bound=1.0, device=loaded.device, progress=progress, cameras=cams)
    if len(mesh.vertices):
        # one pass of the model's shading at the vertices serves the vertex colors and the Stage I materials
        shading = mesh_shading(model, mesh)
        if model.has_stage1_materials:
            world = mesh_to_world(mesh.copy(), loaded.normalization)
            mats = stage1_vertex_materials(shading)
            write_material_ply(loaded.run.root / "mesh_materials.ply", np.asarray(world.vertices), world.faces, mats)
        set_vertex_colors(mesh, vertex_radiance(model, mesh, shading))  # the radiance seen along the normal
    mesh = mesh_to_world(mesh, loaded.normalization)
    path = save_mesh(mesh, loaded.run.mesh_path, force=force)
    for fmt in formats:  # extra copies: mesh.glb, mesh.obj
        if fmt != "ply":
            save_mesh(mesh, loaded.run.root / f"mesh.{fmt}", force=True)
    return path


def set_vertex_colors(mesh, rgb: np.ndarray) -> None:
    """``mesh``'s vertex colors from sRGB [V, 3] uint8 (opaque)."""
    mesh.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1)


def mesh_shading(model, mesh) -> dict[str, np.ndarray]:
    """The model's shading at ``mesh``'s vertices (normalised frame), seen along the normal
    (:meth:`lumisurf.models.protocol.SceneModel.vertex_shading`)."""
    vertices = np.asarray(mesh.vertices, np.float32)
    return model.vertex_shading(vertices, np.asarray(mesh.vertex_normals, np.float32))


def vertex_radiance(model, mesh, shading: dict | None = None) -> np.ndarray:
    """sRGB color [V, 3] uint8 at the vertices of ``mesh`` (normalised frame), as a camera 2 units out along
    the normal sees it (the view-dependent part of shiny surfaces is the one of that view); ``shading``: the
    :func:`mesh_shading` of the same mesh, when already computed."""
    rgb = (shading or mesh_shading(model, mesh))["rgb"]
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def export_voxels(loaded) -> None:
    """``RUN/voxels.pt`` and ``RUN/voxels.ply`` of a sparse-voxel run (:mod:`lumisurf.voxels.io`)."""

    norm = loaded.normalization
    to_world = torch.eye(4)
    to_world[:3, :3] *= float(norm.scale)
    to_world[:3, 3] = torch.tensor(norm.center, dtype=torch.float32)
    for path in (
        save_voxels(loaded.model, loaded.run.root / "voxels.pt", to_world),
        write_voxel_ply(loaded.model, loaded.run.root / "voxels.ply", to_world),
    ):
        print(f"wrote {path}")


@torch.no_grad()
def field_to_voxels(loaded, level: int, band: float = 2.0, sh_bands: int = 4) -> Path:
    """``RUN/voxels.pt`` from a neural-field run: the voxels of octree ``level`` (root cube [-1, 1]^3, the
    normalised frame the voxel presets use) whose centre lies within ``band`` voxel edges of the zero level
    set, with the field's SDF on their corners and grey SH color: a warm start for ``svraster-sdf``."""

    if loaded.model.stores_voxels:
        raise LumisurfError("extract --voxels converts a neural-field run; this run already holds voxels")
    sdf = loaded.model.sdf.sdf
    dense = VoxelOctree.dense(level, torch.full((3,), -1.0), 2.0)
    centres, size = dense.centres(), float(dense.boxes()[1][0])
    near = torch.cat([sdf(c.to(loaded.device)).reshape(-1).abs().cpu() < band * size for c in centres.split(65536)])
    if not near.any():
        raise LumisurfError(f"the field has no surface inside [-1, 1]^3 at level {level}")
    tree = dense.select(near)[0]
    geo = torch.cat([sdf(c.to(loaded.device)).reshape(-1).cpu() for c in tree.corner_positions().split(65536)])
    model = SparseVoxelModel(tree, mode="sdf", sh_bands=sh_bands, geo_init=geo)
    return save_voxels(model, loaded.run.root / "voxels.pt")


def training_cameras(loaded):
    """The run's training cameras in its normalised frame, or None (with one line) when its data is gone."""

    try:
        return load_scene_normalized_as(loaded.cfg.data, loaded.normalization).split("train").cameras.to("cpu")
    except LumisurfError as exc:
        print(f"extract: unseen space left as the SDF has it (cannot read the training cameras: {exc})")
        return None


def stage1_vertex_materials(shading: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stage I shading parameters per vertex from :func:`mesh_shading`: albedo [V, 3], metallic [V],
    roughness [V] and, with a material assignment, material_prob [V, K] and material_id [V]."""
    s = shading
    res = {"albedo": s["albedo"], "metallic": s["metallic"][:, 0], "roughness": s["roughness"][:, 0]}
    if "probs" in s:
        probs = s["probs"]
        res["material_prob"] = probs
        res["material_id"] = probs.argmax(-1).astype(np.int32)
    return res
