"""One bounce of distant light off the mesh itself, for light directions the object blocks (Stage II, relight).

A direction l blocked at surface point x meets the mesh at p (normal n_p). The radiance p sends back along -l
is approximated by its diffuse part under the environment, with visibility, plus a mirror reflection of the
environment weighted by p's normal-incidence reflectance:

    L(x, l) = albedo(p) (1 - metallic(p)) Ebar(p) + F0(p) env(reflect(l, n_p))

``Ebar`` (irradiance / pi, the radiance a white Lambert surface reflects) comes from a per-vertex visibility
table over a fixed Fibonacci set of D directions: ``Ebar(v) = sum_d W[v, d] env(d_d)`` with
``W[v, d] = visible(v, d) max(n_v . d_d, 0) 4 / D`` (uniform sphere quadrature, Delta omega = 4 pi / D),
interpolated over p's face with barycentrics. The table depends on the mesh only (computed once); the
environment and materials enter at query time, so the bounce is differentiable w.r.t. both.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from lumisurf.renderers.mesh_tracer import MeshTracer
from lumisurf.shading.brdf import f0_from
from lumisurf.shading.nero_light import reflect


def fibonacci_sphere(n: int, dtype=torch.float32) -> Tensor:
    """[n, 3] near-uniform unit directions (golden-angle spiral), z from 1 - 1/n to -1 + 1/n."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = torch.sqrt((1.0 - z * z).clamp_min(0.0))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1).to(dtype)


def visibility_table(
    tracer: MeshTracer, dirs: Tensor, offset: float = 1e-3, chunk: int = 4096, progress: bool = False
) -> Tensor:
    """W [V, D] (float16): visible(v, d) max(n_v . d, 0) 4 / D for every vertex v and direction d [D, 3]."""
    v = torch.as_tensor(tracer.vertices, dtype=torch.float32)
    n = torch.as_tensor(tracer.vertex_normals, dtype=torch.float32)
    D = dirs.shape[0]
    table = torch.zeros(v.shape[0], D, dtype=torch.float16)
    for s in tqdm(range(0, v.shape[0], chunk), desc="bounce visibility", disable=not progress):
        vs, ns = v[s : s + chunk], n[s : s + chunk]
        cos = (ns @ dirs.T).clamp_min(0.0)  # [c, D]
        idx = (cos > 0).nonzero()
        origins = vs[idx[:, 0]] + offset * ns[idx[:, 0]]
        free = ~tracer.occluded(origins, dirs[idx[:, 1]])
        w = torch.zeros_like(cos)
        w[idx[:, 0], idx[:, 1]] = cos[idx[:, 0], idx[:, 1]] * free.to(cos.dtype) * (4.0 / D)
        table[s : s + chunk] = w.to(torch.float16)
    return table


class MeshBounce:
    """``bounce(x [M, 3], l [M, 3]) -> [M, 3]``: radiance arriving at x from the mesh along blocked l.

    ``field``: the material field (x -> albedo, metallic, roughness); ``env``: direction [N, 3] -> radiance."""

    def __init__(self, tracer: MeshTracer, field, env: Callable[[Tensor], Tensor], table: Tensor):
        """``table``: ``visibility_table(tracer, fibonacci_sphere(D))`` [V, D] (geometry only: share it)."""
        self.tracer, self.field, self.env, self.table = tracer, field, env, table
        self.dirs = fibonacci_sphere(table.shape[1])
        self.faces = torch.as_tensor(tracer.faces)  # [F, 3] once, not per call (this is on the shading hot path)

    def irradiance(self, faces: Tensor, bary: Tensor) -> Tensor:
        """Ebar [M, 3] at points given by face indices [M] and barycentrics [M, 3]."""
        corners = self.faces.to(faces.device)[faces]  # [M, 3]
        w = self.table.to(faces.device)[corners.reshape(-1)].reshape(*corners.shape, -1).to(bary.dtype)  # [M,3,D]
        w = (w * bary[..., None]).sum(1)  # [M, D]
        return w @ self.env(self.dirs.to(device=bary.device, dtype=bary.dtype))

    def __call__(self, x: Tensor, l: Tensor) -> Tensor:
        hits = self.tracer.intersect(x, l, t_min=1e-4)
        out = torch.zeros_like(x)
        ok = hits.hit.nonzero()[:, 0]
        if ok.numel() == 0:
            return out
        p, n_p = hits.points[ok].to(x.dtype), hits.normals[ok].to(x.dtype)
        mat = self.field(p)
        diffuse = mat["albedo"] * (1 - mat["metallic"]) * self.irradiance(hits.face[ok], hits.bary[ok].to(x.dtype))
        mirror = f0_from(mat["albedo"], mat["metallic"]) * self.env(reflect(l[ok], n_p))
        return out.index_put((ok,), diffuse + mirror)
