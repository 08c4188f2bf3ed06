"""Recipe -> world-space meshes: the parts Mitsuba renders (one shape per part, one material each) and the
GT mesh (parts concatenated; faces of a union part lying inside another part removed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from scenegen import shapes as S
from scenegen.materials import pattern_colors

# shared meshes whose duplicated (UV-seam) vertices are welded for smooth shading normals; the
# two_materials mesh keeps its split box vertices (flat box faces, as in that scene)
WELD = {"glossy_spot"}


@dataclass
class Part:
    """One rendered shape in world coordinates: vertices, faces, shading normals, material id, colors."""

    label: str
    V: np.ndarray
    F: np.ndarray
    N: np.ndarray
    matid: int
    colors: np.ndarray | None = None


@dataclass
class Geometry:
    parts: list[Part]
    gt_V: np.ndarray
    gt_F: np.ndarray
    gt_matid: np.ndarray
    mesh_to_world: np.ndarray
    notes: dict = field(default_factory=dict)


def _sphere(radius: float, centre) -> S.Mesh:
    return S.transform(S.icosphere(5), scale=radius, t=centre)


def _local_parts(shape: str, p: dict, data_root: Path) -> list[tuple[str, S.Mesh]]:
    """(label, mesh) parts of a shape in its own frame."""
    if shape.startswith("mesh:"):
        m = trimesh.load(data_root / p["source"], process=False)
        if p["source"].split("/")[0] in WELD:
            m.merge_vertices()  # weld the UV seams; keeps the face order
        return [("mesh", (np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)))]
    if shape == "blob":
        return [("blob", S.blob(np.asarray(p["waves"]), p["axes"]))]
    if shape == "torus":
        return [("torus", S.torus(p["major"], p["minor"]))]
    if shape == "trefoil":
        return [("trefoil", S.trefoil(p["tube"]))]
    if shape in ("rounded_box", "plate"):
        return [(shape, S.rounded_box(p["half"], p["radius"], spacing=0.03))]
    if shape == "bowl":
        return [("bowl", S.lathe(S.bowl_profile(p["outer"], p["wall"], p["depth"]), 160))]
    if shape == "cup":
        return [("cup", S.lathe(S.cup_profile(p["radius"], p["height"], p["wall"], p["bottom"]), 160))]
    return _union_parts(shape, p)


def _union_parts(shape: str, p: dict) -> list[tuple[str, S.Mesh]]:
    if shape == "sphere_on_box":
        return [
            ("sphere", _sphere(p["sphere"]["radius"], p["sphere"]["centre"])),
            ("box", S.rounded_box(p["box"]["half"], p["box"]["radius"], spacing=0.02)),
        ]
    if shape == "box_fin":
        fin = S.rounded_box(p["fin"]["half"], p["fin"]["radius"], spacing=0.02)
        return [
            ("box", S.rounded_box(p["box"]["half"], p["box"]["radius"], spacing=0.02)),
            ("fin", S.transform(fin, S.rot_z(p["fin_yaw"]), p["fin_centre"])),
        ]
    if shape == "cup_handle":
        c, h = p["cup"], p["handle"]
        handle = S.transform(S.torus(h["major"], h["minor"], 96, 24), S.rot_x(np.pi / 2), h["centre"])
        return [
            ("cup", S.lathe(S.cup_profile(c["radius"], c["height"], c["wall"], c["bottom"]), 160)),
            ("handle", handle),
        ]
    if shape == "ringed_sphere":
        ring = p["ring"]
        return [
            ("sphere", _sphere(p["sphere"]["radius"], (0, 0, 0))),
            (
                "ring",
                S.transform(
                    S.torus(ring["major"], ring["minor"], 160, 24),
                    S.rot_x(ring["tilt"]),
                    S.rot_x(ring["tilt"]) @ np.array([ring["offset"], 0.0, 0.0]),
                ),
            ),
        ]
    raise ValueError(f"unknown shape {shape!r}")


def _normaliser(Vs: list[np.ndarray], R: np.ndarray, fit_radius: float) -> np.ndarray:
    """4x4 world-from-local: rotate, centre the bounding box at the origin, scale to ``fit_radius``."""
    rotated = np.concatenate(Vs) @ R.T
    centre = 0.5 * (rotated.min(0) + rotated.max(0))
    scale = fit_radius / np.linalg.norm(rotated - centre, axis=1).max()
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = scale * R, -scale * centre
    return M


def _submesh(V, F, N, faces_mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    used = np.unique(F[faces_mask])
    remap = np.full(len(V), -1, np.int64)
    remap[used] = np.arange(len(used))
    return V[used], remap[F[faces_mask]], N[used]


def _face_ids(recipe: dict, V, F, data_root: Path) -> np.ndarray:
    """Material id per face of a single mesh: 1 everywhere, or a two-material split."""
    split = recipe.get("split")
    if not split:
        return np.ones(len(F), np.uint8)
    if split["mode"] == "file":
        return np.load(data_root / split["file"]).astype(np.uint8)
    n = np.asarray(split["normal"], np.float64)
    s = V[F].mean(1) @ n
    return np.where(s > np.quantile(V @ n, split["quantile"]), 1, 2).astype(np.uint8)


def _union_ids(recipe: dict, labels: list[str]) -> list[int]:
    """Part -> material id: the first part gets 1, the others 2 (two-material), or all 1."""
    if recipe.get("split"):
        return [1] + [2] * (len(labels) - 1)
    return [1] * len(labels)


def _inside_other(parts: list[Part], i: int) -> np.ndarray:
    """Faces of part i with all three vertices inside another (closed) part: hidden, left out of the GT
    mesh; faces crossing the other part's surface are kept, so the GT surface has no holes there."""
    inside = np.zeros(len(parts[i].V), bool)
    for j, other in enumerate(parts):
        if j != i:
            inside |= trimesh.Trimesh(other.V, other.F, process=False).contains(parts[i].V)
    return inside[parts[i].F].all(1)


def build(recipe: dict, data_root: Path) -> Geometry:
    """World meshes of ``recipe`` (no randomness here)."""
    local = _local_parts(recipe["shape"], recipe["shape_params"], Path(data_root))
    M = _normaliser([m[0] for _, m in local], np.asarray(recipe["rotation"]), recipe["fit_radius"])
    world = [(label, V @ M[:3, :3].T + M[:3, 3], F) for label, (V, F) in local]
    if len(world) == 1:
        label, V, F = world[0]
        N = S.vertex_normals(V, F)
        ids = _face_ids(recipe, V, F, Path(data_root))
        parts = [Part(f"{label}_{k}", *_submesh(V, F, N, ids == k), int(k)) for k in np.unique(ids)]
        gt = (V, F, ids)
    else:
        ids = _union_ids(recipe, [w[0] for w in world])
        parts = [Part(label, V, F, S.vertex_normals(V, F), k) for (label, V, F), k in zip(world, ids)]
        gt = _union_gt(parts)
    for part in parts:
        mat = next(m for m in recipe["materials"] if m["id"] == part.matid)
        if "pattern" in mat:
            part.colors = pattern_colors(mat["pattern"], part.V)
    return Geometry(parts, *gt, mesh_to_world=M)


def _union_gt(parts: list[Part]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Vs, Fs, ids, off = [], [], [], 0
    for i, part in enumerate(parts):
        keep = ~_inside_other(parts, i)
        Vs.append(part.V)
        Fs.append(part.F[keep] + off)
        ids.append(np.full(int(keep.sum()), part.matid, np.uint8))
        off += len(part.V)
    V, F = np.concatenate(Vs), np.concatenate(Fs)
    used = np.unique(F)
    remap = np.full(len(V), -1, np.int64)
    remap[used] = np.arange(len(used))
    return V[used], remap[F], np.concatenate(ids)
