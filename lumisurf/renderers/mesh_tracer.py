"""Ray tracing against a fixed triangle mesh (Stage II): first hits and shadow (any-hit) queries.

Two backends with one interface: ``embree`` (Intel Embree through ``embreex``, float32 BVH on the CPU,
millions of rays/s) finds the face each ray hits first; ``torch`` is brute-force Moller-Trumbore over
all faces (exact, device-agnostic, slow: the fallback and the test reference). Both then recompute
the hit distance, barycentrics, point and normals of the chosen face in the rays' dtype, so outputs
agree to round-off. Triangles are double-sided (no back-face culling). ``t`` is the ray parameter
(the distance for unit ``dirs``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

try:  # Embree is optional: without it the brute-force torch backend runs.
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh as _EmbreeTriangleMesh

    HAS_EMBREE = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_EMBREE = False

_warned_fallback = False
_PAIR_BUDGET = 1 << 21  # rays x faces evaluated at once by the torch backend
_FACE_CHUNK = 8192


@dataclass
class TraceHits:
    """First hits of N rays; every field is 0 / -1 / inf where ``hit`` is False."""

    hit: Tensor  # [N] bool
    t: Tensor  # [N] ray parameter of the hit (inf where no hit)
    face: Tensor  # [N] long face index (-1 where no hit)
    bary: Tensor  # [N, 3] barycentric weights of the face's vertices 0, 1, 2
    points: Tensor  # [N, 3] hit points
    normals: Tensor  # [N, 3] unit interpolated vertex normals, on the side the ray came from
    geo_normals: Tensor  # [N, 3] unit geometric (face) normals, on the side the ray came from


def _as_numpy(x: np.ndarray | Tensor, dtype) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=dtype, order="C", copy=True)


def _angle_weighted_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[V, 3] vertex normals, face normals weighted by the corner angle (as Mitsuba and trimesh)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return np.asarray(mesh.vertex_normals, dtype=np.float64)


class MeshTracer:
    """Ray queries against a triangle mesh. ``vertices`` [V, 3], ``faces`` [F, 3] (int), optional
    ``vertex_normals`` [V, 3] (default: angle-weighted face normals). ``backend`` "auto" picks Embree
    when ``embreex`` imports, else "torch" (with one warning)."""

    def __init__(
        self,
        vertices: np.ndarray | Tensor,
        faces: np.ndarray | Tensor,
        backend: Literal["auto", "embree", "torch"] = "auto",
        vertex_normals: np.ndarray | Tensor | None = None,
    ):
        global _warned_fallback
        self.vertices = _as_numpy(vertices, np.float64)  # [V, 3]
        self.faces = _as_numpy(faces, np.int64)  # [F, 3]
        if (
            self.vertices.ndim != 2
            or self.vertices.shape[1:] != (3,)
            or self.faces.ndim != 2
            or self.faces.shape[1:] != (3,)
        ):
            raise ValueError(
                f"expected vertices [V, 3] and faces [F, 3], got {self.vertices.shape}, {self.faces.shape}"
            )
        if vertex_normals is None:
            vertex_normals = _angle_weighted_normals(self.vertices, self.faces)
        self.vertex_normals = _as_numpy(vertex_normals, np.float64)  # [V, 3]
        if backend == "auto":
            backend = "embree" if HAS_EMBREE else "torch"
            if not HAS_EMBREE and not _warned_fallback:
                msg = "embreex is not installed: MeshTracer uses the brute-force torch backend (slow)"
                warnings.warn(msg, stacklevel=2)
                _warned_fallback = True
        if backend == "embree" and not HAS_EMBREE:
            raise ImportError("MeshTracer backend 'embree' needs the embreex package (pip install embreex)")
        if backend not in ("embree", "torch"):
            raise ValueError(f"unknown MeshTracer backend {backend!r}")
        self.backend: str = backend
        self._scene = self._build_embree() if backend == "embree" else None
        self._cache: dict = {}

    def _build_embree(self):
        scene = rtcore_scene.EmbreeScene()
        _EmbreeTriangleMesh(scene=scene, vertices=self.vertices.astype(np.float32), indices=self.faces.astype(np.int32))
        return scene

    def _tensors(self, like: Tensor) -> dict[str, Tensor]:
        """Mesh arrays on like.device / like.dtype (cached per device and dtype)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            v = torch.as_tensor(self.vertices, dtype=like.dtype, device=like.device)
            f = torch.as_tensor(self.faces, device=like.device)
            tri = v[f]  # [F, 3 corners, 3]
            self._cache[key] = {
                "faces": f,
                "v0": tri[:, 0],
                "e1": tri[:, 1] - tri[:, 0],
                "e2": tri[:, 2] - tri[:, 0],
                "vn": torch.as_tensor(self.vertex_normals, dtype=like.dtype, device=like.device),
                "centre": 0.5 * (v.min(0).values + v.max(0).values) if len(v) else v.new_zeros(3),
            }
        return self._cache[key]

    # ---------------------------------------------------------------- queries
    def intersect(self, origins: Tensor, dirs: Tensor, t_min: float = 0.0) -> TraceHits:
        """First hit with t > t_min of rays ``origins + t dirs`` ([N, 3] each, dirs unit)."""
        with torch.no_grad():
            if self.backend == "embree":
                face = self._embree_first(origins, dirs, t_min)
            else:
                face = self._torch_first(origins, dirs, t_min)
        return self._hits_from_faces(origins, dirs, face)

    def occluded(self, origins: Tensor, dirs: Tensor, t_max: Tensor | None = None, eps: float = 1e-4) -> Tensor:
        """[N] bool: does the ray hit any face with eps < t < t_max ([N] or None = inf)."""
        n = origins.shape[0]
        if t_max is None:
            t_max = torch.full((n,), float("inf"), dtype=origins.dtype, device=origins.device)
        t_max = torch.as_tensor(t_max, dtype=origins.dtype, device=origins.device).expand(n)
        with torch.no_grad():
            if self.backend == "embree":
                return self._embree_occluded(origins, dirs, t_max, eps)
            return self._torch_occluded(origins, dirs, t_max, eps)

    # ---------------------------------------------------------------- embree
    def _embree_first(self, origins: Tensor, dirs: Tensor, t_min: float) -> Tensor:
        o = origins.detach().cpu().double().numpy()
        d = dirs.detach().cpu().double().numpy()
        if o.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=origins.device)
        o = o + t_min * d
        face = self._scene.run(o.astype(np.float32), d.astype(np.float32))
        return torch.from_numpy(np.asarray(face, dtype=np.int64)).to(origins.device)

    def _embree_occluded(self, origins: Tensor, dirs: Tensor, t_max: Tensor, eps: float) -> Tensor:
        o = origins.detach().cpu().double().numpy()
        d = dirs.detach().cpu().double().numpy()
        span = t_max.detach().cpu().double().numpy() - eps
        live = span > 0
        out = np.zeros(o.shape[0], dtype=bool)
        if live.any():
            o_l, d_l = o[live] + eps * d[live], d[live]
            far = np.minimum(span[live], 1e30).astype(np.float32)
            res = self._scene.run(o_l.astype(np.float32), d_l.astype(np.float32), dists=far, query="OCCLUDED")
            out[live] = np.asarray(res) != -1
        return torch.from_numpy(out).to(origins.device)

    # ---------------------------------------------------------------- torch
    def _face_matrix(self, like: Tensor) -> list[Tensor]:
        """Per face chunk, [10, 4 Fc] weights so that [d, o x d, o, 1] @ W = (det, u det, v det, t det).

        Moller-Trumbore rewritten with triple-product identities: det = -d.N, u det = e2.(o x d) -
        d.(e2 x v0), v det = -e1.(o x d) - d.(v0 x e1), t det = o.N - v0.N (N = e1 x e2); vertices are
        relative to the bounding-box centre."""
        m = self._tensors(like)
        if "chunks" not in m:
            v0, e1, e2 = m["v0"] - m["centre"], m["e1"], m["e2"]
            nrm = torch.cross(e1, e2, dim=-1)
            z, z1 = torch.zeros_like(nrm), torch.zeros_like(nrm[:, :1])
            rows = [
                torch.cat([-nrm, z, z, z1], 1),
                torch.cat([-torch.cross(e2, v0, dim=-1), e2, z, z1], 1),
                torch.cat([-torch.cross(v0, e1, dim=-1), -e1, z, z1], 1),
                torch.cat([z, z, nrm, -(v0 * nrm).sum(-1, keepdim=True)], 1),
            ]
            m["chunks"] = [
                torch.cat([r[f0 : f0 + _FACE_CHUNK] for r in rows], 0).T.contiguous()
                for f0 in range(0, nrm.shape[0], _FACE_CHUNK)
            ]
        return m["chunks"]

    def _torch_scan(self, origins: Tensor, dirs: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest t [N] in (lo, hi) and its face [N] (-1 none) over all faces, chunked over rays and faces."""
        chunks, centre = self._face_matrix(origins), self._tensors(origins)["centre"]
        n = origins.shape[0]
        # slide each origin along its line to the point nearest the mesh centre (less cancellation)
        o = origins - centre
        shift = -(o * dirs).sum(-1) / (dirs * dirs).sum(-1).clamp_min(1e-30)  # [N]
        o = o + shift[:, None] * dirs
        feat = torch.cat([dirs, torch.cross(o, dirs, dim=-1), o, torch.ones_like(o[:, :1])], 1)  # [N, 10]
        lo, hi = lo - shift, hi - shift
        tol = 1e-9 if origins.dtype == torch.float64 else 2e-4
        best_t = torch.full((n,), float("inf"), dtype=origins.dtype, device=origins.device)
        best_f = torch.full((n,), -1, dtype=torch.long, device=origins.device)
        r_chunk = max(1, _PAIR_BUDGET // _FACE_CHUNK)
        for r0 in range(0, n, r_chunk):
            rs = slice(r0, r0 + r_chunk)
            for k, w in enumerate(chunks):
                det, u, v, t = (feat[rs] @ w).split(w.shape[1] // 4, dim=1)  # [R, Fc] each
                inv = 1.0 / det
                u, v, t = u * inv, v * inv, t * inv
                ok = (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol) & (t > lo[rs, None]) & (t < hi[rs, None])
                t, idx = torch.where(ok, t, torch.full_like(t, float("inf"))).min(dim=1)
                better = t < best_t[rs]
                best_t[rs] = torch.where(better, t, best_t[rs])
                best_f[rs] = torch.where(better, idx + k * _FACE_CHUNK, best_f[rs])
        return best_t + shift, best_f

    def _torch_first(self, origins: Tensor, dirs: Tensor, t_min: float) -> Tensor:
        lo = torch.full_like(origins[:, 0], t_min)
        return self._torch_scan(origins.detach(), dirs.detach(), lo, torch.full_like(lo, float("inf")))[1]

    def _torch_occluded(self, origins: Tensor, dirs: Tensor, t_max: Tensor, eps: float) -> Tensor:
        lo = torch.full_like(origins[:, 0], eps)
        return self._torch_scan(origins.detach(), dirs.detach(), lo, t_max.detach())[1] >= 0

    # ---------------------------------------------------------------- shared
    def _hits_from_faces(self, origins: Tensor, dirs: Tensor, face: Tensor) -> TraceHits:
        """Exact t, barycentrics, points and normals of the given faces ([N] long, -1 = miss); computed
        for the hit rays only and scattered into full-size outputs."""
        m = self._tensors(origins)
        n, dtype, dev = origins.shape[0], origins.dtype, origins.device
        idx = (face >= 0).nonzero()[:, 0]
        o, d, fi = origins[idx], dirs[idx], face[idx]
        v0, e1, e2 = m["v0"][fi], m["e1"][fi], m["e2"][fi]  # [M, 3] each
        geo = torch.cross(e1, e2, dim=-1)  # [M, 3] unnormalised face normal
        denom = (d * geo).sum(-1)
        ok = denom != 0
        t = ((v0 - o) * geo).sum(-1) / torch.where(ok, denom, torch.ones_like(denom))
        ok = ok & torch.isfinite(t)
        idx, o, d, fi, v0, e1, e2, geo, denom, t = (x[ok] for x in (idx, o, d, fi, v0, e1, e2, geo, denom, t))
        points = o + t[:, None] * d
        bary = self._barycentrics(points, v0, e1, e2)
        vn = (bary[:, :, None] * m["vn"][m["faces"][fi]]).sum(1)  # [M, 3]
        geo_u = geo / geo.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        vn = torch.where(vn.norm(dim=-1, keepdim=True) > 1e-12, vn, geo_u)
        vn = vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        side = torch.where(denom > 0, -1.0, 1.0).to(dtype)[:, None]  # face the incoming ray
        zeros3 = torch.zeros(n, 3, dtype=dtype, device=dev)

        def scatter(base: Tensor, values: Tensor) -> Tensor:
            return base.index_put((idx,), values)

        return TraceHits(
            hit=scatter(torch.zeros(n, dtype=torch.bool, device=dev), torch.ones_like(idx, dtype=torch.bool)),
            t=scatter(torch.full((n,), float("inf"), dtype=dtype, device=dev), t),
            face=scatter(torch.full((n,), -1, dtype=torch.long, device=dev), fi),
            bary=scatter(zeros3, bary),
            points=scatter(zeros3, points),
            normals=scatter(zeros3, side * vn),
            geo_normals=scatter(zeros3, side * geo_u),
        )

    @staticmethod
    def _barycentrics(p: Tensor, v0: Tensor, e1: Tensor, e2: Tensor) -> Tensor:
        """[N, 3] weights of corners 0, 1, 2 of the point p in its face plane, clamped to the triangle."""
        w = p - v0
        d11, d12, d22 = (e1 * e1).sum(-1), (e1 * e2).sum(-1), (e2 * e2).sum(-1)
        w1, w2 = (w * e1).sum(-1), (w * e2).sum(-1)
        det = d11 * d22 - d12 * d12
        det = torch.where(det == 0, torch.ones_like(det), det)
        b1 = (d22 * w1 - d12 * w2) / det
        b2 = (d11 * w2 - d12 * w1) / det
        bary = torch.stack([1 - b1 - b2, b1, b2], -1).clamp_min(0)
        return bary / bary.sum(-1, keepdim=True).clamp_min(1e-30)
