"""Procedural closed triangle meshes built with numpy: each builder returns ``(V [n,3] float64, F [m,3] int64)``
with faces wound counter-clockwise seen from outside (outward normals).

Builders: :func:`blob` (sphere displaced by low-frequency noise), :func:`torus`, :func:`trefoil` (tube around
a trefoil knot), :func:`rounded_box` (box with bevelled edges; thin ones are plates/fins) and
:func:`lathe` (surface of revolution of a closed profile: :func:`bowl_profile`, :func:`cup_profile`).
"""

from __future__ import annotations

import numpy as np
import trimesh

Mesh = tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------- mesh utilities
def vertex_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Unit vertex normals [n, 3] (trimesh's angle-weighted mean of face normals, as for the shared
    scenes): the shading normals the renderer interpolates."""
    return np.asarray(trimesh.Trimesh(V, F, process=False).vertex_normals, np.float64)


def signed_volume(V: np.ndarray, F: np.ndarray) -> float:
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def orient_outward(V: np.ndarray, F: np.ndarray) -> Mesh:
    """Flip all faces if the (closed, consistently wound) mesh has negative volume."""
    return (V, F[:, ::-1].copy()) if signed_volume(V, F) < 0 else (V, F)


def merge_duplicates(V: np.ndarray, F: np.ndarray, decimals: int = 9) -> Mesh:
    """Weld vertices with equal coordinates (rounded) and drop faces that became degenerate."""
    _, first, inverse = np.unique(np.round(V, decimals), axis=0, return_index=True, return_inverse=True)
    F = inverse.reshape(-1)[F]
    keep = (F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 0] != F[:, 2])
    return V[first], F[keep]


def grid_faces(rows: int, cols: int, wrap_cols: bool, offset: int = 0) -> np.ndarray:
    """Two triangles per cell of a rows x cols vertex grid (row-major ids + offset); columns may wrap."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols if wrap_cols else cols - 1), indexing="ij")
    a = r * cols + c
    b = r * cols + (c + 1) % cols
    d, e = a + cols, b + cols
    tri = np.concatenate([np.stack([a, b, e], -1).reshape(-1, 3), np.stack([a, e, d], -1).reshape(-1, 3)])
    return tri + offset


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def transform(mesh: Mesh, R: np.ndarray | None = None, t=(0.0, 0.0, 0.0), scale=1.0) -> Mesh:
    """x -> R @ (scale * x) + t (scale may be a 3-vector; R defaults to the identity)."""
    V, F = mesh
    R = np.eye(3) if R is None else R
    return (V * np.asarray(scale, dtype=np.float64)) @ R.T + np.asarray(t, dtype=np.float64), F


# ---------------------------------------------------------------- primitives
def icosphere(level: int = 5) -> Mesh:
    s = trimesh.creation.icosphere(subdivisions=level, radius=1.0)
    return orient_outward(np.asarray(s.vertices, np.float64), np.asarray(s.faces, np.int64))


def blob(waves: np.ndarray, axes=(1.0, 1.0, 1.0), level: int = 5) -> Mesh:
    """Unit sphere displaced radially by r(d) = 1 + sum_k a_k sin(f_k d.w_k + phi_k), then scaled by ``axes``.

    waves: [K, 6] rows (a, f, w_x, w_y, w_z, phi) with unit w; star-shaped, hence closed and simple.
    """
    V, F = icosphere(level)
    r = 1.0 + sum(a * np.sin(f * (V @ np.array(w)) + phi) for a, f, *w, phi in np.asarray(waves))
    return orient_outward(V * r[:, None] * np.asarray(axes), F)


def torus(major: float = 1.0, minor: float = 0.35, nu: int = 160, nv: int = 48) -> Mesh:
    """Torus around the z axis."""
    u, v = np.meshgrid(
        np.linspace(0, 2 * np.pi, nu, endpoint=False), np.linspace(0, 2 * np.pi, nv, endpoint=False), indexing="ij"
    )
    ring = major + minor * np.cos(v)
    V = np.stack([ring * np.cos(u), ring * np.sin(u), minor * np.sin(v)], -1).reshape(-1, 3)
    F = grid_faces(nu + 1, nv, wrap_cols=True)
    F[nu * nv <= F] -= nu * nv  # wrap the rows too
    return orient_outward(V, F)


def _transport_frames(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation-minimising normals/binormals along the closed polyline C (double reflection), twist closed."""
    T = np.roll(C, -1, 0) - np.roll(C, 1, 0)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    n = len(C)
    N = np.zeros_like(C)
    a = np.cross(T[0], [0.0, 0.0, 1.0] if abs(T[0, 2]) < 0.9 else [1.0, 0.0, 0.0])
    N[0] = a / np.linalg.norm(a)
    for i in range(n):  # one extra step (i = n-1 -> 0) measures the closing twist
        j = (i + 1) % n
        v1 = C[j] - C[i]
        c1 = v1 @ v1
        rl = N[i] - 2 / c1 * (v1 @ N[i]) * v1
        tl = T[i] - 2 / c1 * (v1 @ T[i]) * v1
        v2 = T[j] - tl
        nxt = rl - 2 / (v2 @ v2) * (v2 @ rl) * v2
        if j == 0:
            closing = nxt
        else:
            N[j] = nxt / np.linalg.norm(nxt)
    B0 = np.cross(T[0], N[0])
    twist = np.arctan2(closing @ B0, closing @ N[0])
    ang = -twist * np.arange(n) / n
    B = np.cross(T, N)
    return np.cos(ang)[:, None] * N + np.sin(ang)[:, None] * B, -np.sin(ang)[:, None] * N + np.cos(ang)[:, None] * B


def trefoil(tube: float = 0.4, nu: int = 360, nv: int = 32) -> Mesh:
    """Tube of radius ``tube`` around the trefoil knot (sin t + 2 sin 2t, cos t - 2 cos 2t, -sin 3t)."""
    t = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    C = np.stack([np.sin(t) + 2 * np.sin(2 * t), np.cos(t) - 2 * np.cos(2 * t), -np.sin(3 * t)], -1)
    N, B = _transport_frames(C)
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)
    V = C[:, None] + tube * (np.cos(v)[None, :, None] * N[:, None] + np.sin(v)[None, :, None] * B[:, None])
    F = grid_faces(nu + 1, nv, wrap_cols=True)
    F[nu * nv <= F] -= nu * nv
    return orient_outward(V.reshape(-1, 3), F)


def _bevel_axis(h: float, r: float, spacing: float, n_bevel: int = 6) -> np.ndarray:
    """Grid coordinates on [-h, h]: dense in the bevel zones |x| > h - r."""
    flat = np.linspace(-(h - r), h - r, max(2, int(np.ceil(2 * (h - r) / spacing)) + 1))
    bev = np.linspace(h - r, h, n_bevel + 1)[1:]
    return np.concatenate([-bev[::-1], flat, bev])


def rounded_box(half=(0.5, 0.5, 0.5), radius: float = 0.08, spacing: float = 0.03) -> Mesh:
    """Box [-h, h] with edges/corners rounded to ``radius`` (clamp-and-normalise map of a cube grid)."""
    h = np.asarray(half, np.float64)
    r = min(radius, 0.999 * h.min())
    axes = [_bevel_axis(h[i], r, spacing) for i in range(3)]
    Vs, Fs, off = [], [], 0
    for ax in range(3):
        i, j = [k for k in range(3) if k != ax]
        a, b = np.meshgrid(axes[i], axes[j], indexing="ij")
        for sign in (-1.0, 1.0):
            q = np.zeros(a.shape + (3,))
            q[..., i], q[..., j], q[..., ax] = a, b, sign * h[ax]
            Vs.append(q.reshape(-1, 3))
            Fs.append(grid_faces(*a.shape, wrap_cols=False, offset=off))
            off += a.size
    V, F = merge_duplicates(np.concatenate(Vs), np.concatenate(Fs))
    c = np.clip(V, -(h - r), h - r)
    d = V - c
    V = c + r * d / np.linalg.norm(d, axis=1, keepdims=True)
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    flip = np.einsum("ij,ij->i", fn, V[F].mean(1)) < 0  # convex: outward = away from the centre
    F[flip] = F[flip][:, ::-1]
    return V, F


def lathe(profile: np.ndarray, n_theta: int = 128) -> Mesh:
    """Revolve a profile [(rho, z), ...] about z; first and last points must lie on the axis (rho = 0)."""
    P = np.asarray(profile, np.float64)
    inner = P[1:-1]
    th = np.linspace(0, 2 * np.pi, n_theta, endpoint=False)
    rings = np.stack(
        [inner[:, :1] * np.cos(th), inner[:, :1] * np.sin(th), np.repeat(inner[:, 1:], n_theta, 1)], -1
    ).reshape(-1, 3)
    m = len(inner)
    V = np.concatenate([[[0.0, 0.0, P[0, 1]]], rings, [[0.0, 0.0, P[-1, 1]]]])
    c = np.arange(n_theta)
    first = np.stack([np.zeros(n_theta, int), 1 + (c + 1) % n_theta, 1 + c], -1)
    last_id = 1 + m * n_theta
    base = 1 + (m - 1) * n_theta
    last = np.stack([np.full(n_theta, last_id), base + c, base + (c + 1) % n_theta], -1)
    F = np.concatenate([first, grid_faces(m, n_theta, wrap_cols=True, offset=1), last])
    return orient_outward(V, F)


def _arc(center, radius, a0, a1, step):
    n = max(2, int(np.ceil(abs(a1 - a0) * radius / step)) + 1)
    a = np.linspace(a0, a1, n)
    return np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], -1)


def _line(p0, p1, step):
    n = max(2, int(np.ceil(np.hypot(p1[0] - p0[0], p1[1] - p0[1]) / step)) + 1)
    return np.linspace(p0, p1, n)


def _chain(pieces) -> np.ndarray:
    """Concatenate polyline pieces, dropping each piece's first point (it repeats the previous end)."""
    return np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])


def bowl_profile(outer: float = 1.0, wall: float = 0.08, depth: float = 0.8, step: float = 0.02) -> np.ndarray:
    """Hemispherical shell (z squashed by ``depth``), rim at z = 0, opening up; rounded rim."""
    inner = outer - wall
    out = _arc((0.0, 0.0), outer, -np.pi / 2, 0.0, step)
    rim = _arc(((outer + inner) / 2, 0.0), wall / 2, 0.0, np.pi, step / 3)
    inn = _arc((0.0, 0.0), inner, 0.0, -np.pi / 2, step)
    P = _chain([out, rim, inn])
    P[:, 0] = np.where(np.abs(P[:, 0]) < 1e-12, 0.0, P[:, 0])
    P[:, 1] *= depth
    return P


def cup_profile(
    radius: float = 0.6,
    height: float = 1.2,
    wall: float = 0.07,
    bottom: float = 0.1,
    corner: float = 0.1,
    step: float = 0.02,
) -> np.ndarray:
    """Cylindrical cup standing on z = 0 with rounded outer/inner bottom corners and a rounded rim."""
    ri, c, ci = radius - wall, corner, min(corner, 0.5 * (radius - wall))
    pieces = [
        _line((0.0, 0.0), (radius - c, 0.0), step),
        _arc((radius - c, c), c, -np.pi / 2, 0.0, step),
        _line((radius, c), (radius, height), step),
        _arc((radius - wall / 2, height), wall / 2, 0.0, np.pi, step / 3),
        _line((ri, height), (ri, bottom + ci), step),
        _arc((ri - ci, bottom + ci), ci, 0.0, -np.pi / 2, step),
        _line((ri - ci, bottom), (0.0, bottom), step),
    ]
    return _chain(pieces)
