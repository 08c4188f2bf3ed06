"""Mesh extraction (marching cubes on the SDF), cleaning and export."""

from __future__ import annotations

from lumisurf.mesh.export import mesh_to_normalized, mesh_to_world, save_mesh
from lumisurf.mesh.marching_cubes import evaluate_sdf_grid, extract_mesh, largest_component

__all__ = ["evaluate_sdf_grid", "extract_mesh", "largest_component", "mesh_to_world", "mesh_to_normalized", "save_mesh"]
