"""MeshTracer: Embree vs brute-force torch, an analytic sphere, a hand-computed triangle, shadow rays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import trimesh

from lumisurf.renderers import mesh_tracer
from lumisurf.renderers.mesh_tracer import MeshTracer

needs_embree = pytest.mark.skipif(not mesh_tracer.HAS_EMBREE, reason="embreex is not installed")


def _scene_mesh() -> trimesh.Trimesh:
    """An icosphere (r 0.5) and a box beside it, as one mesh."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    box = trimesh.creation.box(extents=(0.4, 0.6, 0.3))
    box.apply_translation((0.8, 0.1, -0.2))
    return trimesh.util.concatenate([sphere, box])


def _random_rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from a sphere of radius 3 towards points within radius 1.3 (many miss) + rays from inside."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g, dtype=torch.float64)
    o = 3.0 * o / o.norm(dim=-1, keepdim=True)
    target = 1.3 * (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1)
    o[: n // 8] = 0.1 * torch.randn(n // 8, 3, generator=g, dtype=torch.float64)  # inside the sphere
    d = target - o
    return o, d / d.norm(dim=-1, keepdim=True)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_single_triangle_hand_computed():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    tracer = MeshTracer(v, np.array([[0, 1, 2]]), backend="torch")
    o = torch.tensor([[0.25, 0.5, 2.0], [0.25, 0.5, -1.0], [0.9, 0.9, 1.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0, -1], [0, 0, 1], [0, 0, -1]], dtype=torch.float64)
    h = tracer.intersect(o, d)
    assert h.hit.tolist() == [True, True, False]
    assert torch.allclose(h.t[:2], torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert torch.isinf(h.t[2]) and h.face.tolist() == [0, 0, -1]
    assert torch.allclose(h.bary[0], torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64))
    assert torch.allclose(h.points[1], torch.tensor([0.25, 0.5, 0.0], dtype=torch.float64))
    # normals face the incoming ray: +z from above, -z from below; zeros on a miss
    assert torch.allclose(h.normals[:2], torch.tensor([[0.0, 0, 1], [0, 0, -1]], dtype=torch.float64))
    assert h.normals[2].abs().sum() == 0 and h.bary[2].abs().sum() == 0


@pytest.mark.parametrize("backend", ["torch", pytest.param("embree", marks=needs_embree)])
def test_analytic_sphere(backend):
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    tracer = MeshTracer(mesh.vertices, mesh.faces, backend=backend)
    n = 512
    g = torch.Generator().manual_seed(1)
    d = _unit(torch.randn(n, 3, generator=g, dtype=torch.float64))
    # impact parameter b in [0, 0.95] hits, in [1.05, 1.5] misses; origin 4 units back along -d
    side = _unit(torch.cross(d, torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1))
    b = torch.where(
        torch.arange(n) % 4 == 0,
        1.05 + 0.45 * torch.rand(n, generator=g, dtype=torch.float64),
        0.95 * torch.rand(n, generator=g, dtype=torch.float64),
    )
    o = b[:, None] * side - 4.0 * d
    h = tracer.intersect(o, d)
    hits_exact = b < 1.0
    assert torch.equal(h.hit, hits_exact)
    t_exact = 4.0 - torch.sqrt(1.0 - b**2)
    assert (h.t[hits_exact] - t_exact[hits_exact]).abs().max() < 3e-3  # chord error of the facets
    n_exact = _unit(h.points[hits_exact])
    cos = (h.normals[hits_exact] * n_exact).sum(-1)
    assert cos.min() > math.cos(math.radians(1.0))
    assert torch.allclose(h.normals[hits_exact].norm(dim=-1), torch.ones(int(hits_exact.sum()), dtype=torch.float64))
    # rays from the centre: every one is occluded, none within t_max = 0.9
    c = torch.zeros(64, 3, dtype=torch.float64)
    assert tracer.occluded(c, d[:64]).all()
    assert not tracer.occluded(c, d[:64], t_max=torch.full((64,), 0.9, dtype=torch.float64)).any()


@needs_embree
def test_embree_matches_torch():
    mesh = _scene_mesh()
    emb = MeshTracer(mesh.vertices, mesh.faces, backend="embree")
    ref = MeshTracer(mesh.vertices, mesh.faces, backend="torch")
    assert emb.backend == "embree" and ref.backend == "torch"
    o, d = _random_rays(2000)
    he, hr = emb.intersect(o, d), ref.intersect(o, d)
    assert 0.2 < hr.hit.float().mean() < 0.95  # both hits and misses are exercised
    assert torch.equal(he.hit, hr.hit)
    m = hr.hit
    assert (he.t[m] - hr.t[m]).abs().max() < 1e-5
    same = he.face == hr.face
    # ties: a ray through a shared edge may report either face, but at the same point
    assert same.float().mean() > 0.99
    tie = m & ~same
    assert ((he.points[tie] - hr.points[tie]).abs() < 1e-5).all()
    assert (he.normals[m & same] - hr.normals[m & same]).abs().max() < 1e-6
    assert torch.allclose(he.bary[m & same], hr.bary[m & same], atol=1e-6)
    assert torch.allclose(he.bary.sum(-1)[m], torch.ones(int(m.sum()), dtype=torch.float64))
    # face normals face the incoming ray; shading normals are on the same side as the face normal
    assert ((he.geo_normals[m] * d[m]).sum(-1) < 0).all()
    assert ((he.normals[m] * he.geo_normals[m]).sum(-1) > 0.5).all()
    # shadow rays with finite and infinite t_max
    t_max = torch.where(m, hr.t * torch.where(torch.arange(len(m)) % 2 == 0, 0.5, 1.5), torch.full_like(hr.t, 5.0))
    for tm in (None, t_max):
        assert torch.equal(emb.occluded(o, d, tm), ref.occluded(o, d, tm))
    occ = emb.occluded(o, d, t_max)
    assert torch.equal(occ[m], (torch.arange(len(m)) % 2 == 1)[m])


def test_outputs_follow_input_dtype_and_misses():
    mesh = _scene_mesh()
    tracer = MeshTracer(torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces), backend="auto")
    o, d = _random_rays(64, seed=3)
    h = tracer.intersect(o.float(), d.float())
    assert h.t.dtype == torch.float32 and h.points.shape == (64, 3) and h.bary.shape == (64, 3)
    assert h.face.dtype == torch.long and h.hit.dtype == torch.bool
    miss = ~h.hit
    assert torch.isinf(h.t[miss]).all() and (h.face[miss] == -1).all()
    assert h.points[miss].abs().sum() == 0 and h.normals[miss].abs().sum() == 0
    # a hit point, pushed back along the ray, is hit again at the same place
    hh = tracer.intersect(h.points[h.hit] - 0.01 * d.float()[h.hit], d.float()[h.hit])
    assert torch.allclose(hh.t, torch.full_like(hh.t, 0.01), atol=1e-4)
    assert tracer.intersect(o[:0], d[:0]).hit.shape == (0,)


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(mesh_tracer, "HAS_EMBREE", False)
    monkeypatch.setattr(mesh_tracer, "_warned_fallback", False)
    mesh = trimesh.creation.box()
    with pytest.warns(UserWarning, match="embreex"):
        assert MeshTracer(mesh.vertices, mesh.faces).backend == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MeshTracer(mesh.vertices, mesh.faces).backend == "torch"
    with pytest.raises(ImportError):
        MeshTracer(mesh.vertices, mesh.faces, backend="embree")
