"""Mesh extraction: evaluate an SDF on a dense grid and run marching cubes on it.

Conventions: the SDF is negative inside and positive outside; the grid spans
``[-bound, bound]^3`` with ``resolution`` points per axis including both ends, and is indexed
``[x, y, z]`` (axis 0 = x). Returned meshes live in the frame of ``sdf_fn`` (normally the
normalised frame; use :func:`lumisurf.mesh.export.mesh_to_world` to go back to dataset units)
and have outward-facing normals.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

from lumisurf.errors import LumisurfError
from lumisurf.mesh.visibility import fill_unseen

SdfFn = Callable[[Tensor], Tensor]  # [N, 3] float32 -> [N] (or [N, 1])


def _infer_device(sdf_fn, device) -> torch.device:
    """The device to evaluate on: given, else the first parameter of an ``nn.Module``, else CPU."""
    if device is not None:
        return torch.device(device)
    params = getattr(sdf_fn, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def evaluate_sdf_grid(
    sdf_fn: SdfFn, resolution: int, bound: float = 1.0, chunk: int = 65536, device=None, progress: bool = False
) -> np.ndarray:
    """SDF values on a ``resolution^3`` grid over ``[-bound, bound]^3`` (both ends included).

    ``sdf_fn`` is called under ``torch.no_grad`` on chunks of ``[chunk, 3]`` float32 points.
    Returns float32 ``[R, R, R]`` indexed ``[x, y, z]``.
    """
    if resolution < 2:
        raise LumisurfError(f"marching cubes resolution must be >= 2, got {resolution}")
    dev = _infer_device(sdf_fn, device)
    r = int(resolution)
    coords = torch.linspace(-bound, bound, r, dtype=torch.float32, device=dev)  # [R]
    yz = torch.stack(torch.meshgrid(coords, coords, indexing="ij"), dim=-1).reshape(-1, 2)  # [R*R, 2]
    total = r**3
    out = np.empty(total, dtype=np.float32)
    starts = range(0, total, chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="sdf grid", unit="chunk", leave=False)
    with torch.no_grad():
        for s in starts:
            e = min(s + chunk, total)
            pts = _grid_points(coords, yz, s, e)  # [e - s, 3], flat order x slowest
            out[s:e] = sdf_fn(pts).reshape(-1).float().cpu().numpy()
    return out.reshape(r, r, r)


def _grid_points(coords: Tensor, yz: Tensor, start: int, end: int) -> Tensor:
    """Grid points of flat indices ``[start, end)`` (x slowest, z fastest).  # [end - start, 3]"""
    plane = yz.shape[0]
    parts = []
    for i in range(start // plane, (end - 1) // plane + 1):
        a, b = max(start - i * plane, 0), min(end - i * plane, plane)
        x = coords[i].expand(b - a, 1)
        parts.append(torch.cat([x, yz[a:b]], dim=-1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Keep the connected component (faces linked through shared vertices) of largest area."""
    f = np.asarray(mesh.faces)  # [F, 3]
    if len(f) == 0:
        return mesh
    n_v = len(mesh.vertices)
    src = np.concatenate([f[:, 0], f[:, 1]])
    dst = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n_v, n_v))
    n_comp, labels = connected_components(graph, directed=False)
    if n_comp <= 1:
        return mesh
    face_labels = labels[f[:, 0]]
    area = np.bincount(face_labels, weights=mesh.area_faces, minlength=n_comp)
    keep = face_labels == int(np.argmax(area))
    out = mesh.copy()
    out.update_faces(keep)
    out.remove_unreferenced_vertices()
    return out


def fill_cavities(grid: np.ndarray, level: float = 0.0) -> tuple[np.ndarray, int]:
    """The SDF grid [R, R, R] with every outside region (> ``level``) that the grid's border cannot reach
    (6-connected) made inside: a closed void within the object is never seen by a camera outside it, and an
    SDF trained from images leaves spurious bubbles there. Returns the grid and the number of voxels filled."""
    from scipy.ndimage import label

    labels, _ = label(grid > level)  # 6-connectivity
    border = np.unique(
        np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(), labels[:, :, [0, -1]].ravel()])
    )
    void = (labels > 0) & ~np.isin(labels, border)
    n = int(void.sum())
    if n:
        grid = grid.copy()
        grid[void] = level - np.abs(grid[void] - level)  # mirrored below the level: the voxels become inside
    return grid, n


def extract_mesh(
    sdf_fn: SdfFn,
    resolution: int = 256,
    bound: float = 1.0,
    level: float = 0.0,
    keep_largest: bool = True,
    chunk: int = 65536,
    device=None,
    progress: bool = False,
    grid: np.ndarray | None = None,
    fill_voids: bool = False,
    cameras=None,
) -> trimesh.Trimesh:
    """Marching-cubes mesh of the ``level`` set of ``sdf_fn`` in the ``sdf_fn`` frame.

    Faces are wound so normals point outward (towards increasing SDF). ``keep_largest`` drops
    every connected component but the one with the largest area (floaters). A precomputed
    ``grid`` from :func:`evaluate_sdf_grid` may be passed to skip the evaluation. ``fill_voids`` makes the
    closed voids inside the object solid first (:func:`fill_cavities`); with ``cameras`` (in the ``sdf_fn``
    frame) so is the outside space that none of them sees (:func:`lumisurf.mesh.visibility.fill_unseen`).
    Raises :class:`LumisurfError` when the level set is empty or the SDF has NaN/inf values.
    """
    from skimage.measure import marching_cubes

    if grid is None:
        grid = evaluate_sdf_grid(sdf_fn, resolution, bound, chunk, device, progress)
    resolution = grid.shape[0]
    finite = np.isfinite(grid)
    if not finite.all():
        raise LumisurfError(
            f"the SDF returned {int((~finite).sum())} NaN/inf values on the "
            f"{resolution}^3 grid; the model is probably diverged or corrupt"
        )
    lo, hi = float(grid.min()), float(grid.max())
    if not lo < level < hi:
        raise LumisurfError(
            f"the SDF never crosses level {level} inside [-{bound}, {bound}]^3 (values in "
            f"[{lo:.4g}, {hi:.4g}]): no surface to extract (untrained or collapsed model?)"
        )
    if fill_voids:
        grid, _ = fill_cavities(grid, level)
    if cameras is not None:
        grid, _ = fill_unseen(grid, cameras, bound, level)
    step = 2.0 * bound / (resolution - 1)
    # skimage's "descent" winding is the one whose face normals point towards increasing values
    # (checked by the sphere/plane tests), i.e. outward for an SDF that is negative inside
    verts, faces, _, _ = marching_cubes(
        grid, level=level, spacing=(step, step, step), gradient_direction="descent", allow_degenerate=False
    )
    verts = verts.astype(np.float64) - bound
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=True)
    if keep_largest:
        mesh = largest_component(mesh)
    if len(mesh.faces) == 0:
        raise LumisurfError(f"marching cubes at level {level} produced no faces")
    return mesh
