"""One-bounce light off the mesh (``renderers/bounce.py``): quadrature, visibility table, hand values, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumisurf.renderers.bounce import MeshBounce, fibonacci_sphere, visibility_table
from lumisurf.renderers.mesh_tracer import HAS_EMBREE, MeshTracer
from lumisurf.shading.envmap import EnvironmentMap

BACKENDS = ["torch"] + (["embree"] if HAS_EMBREE else [])


def _quad(z: float, facing_up: bool, half: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3]]) if facing_up else np.array([[0, 2, 1], [0, 3, 2]])
    return v, f


def _const_field(albedo: float, metallic: float):
    def field(p):
        n = p.shape[0]
        return {
            "albedo": torch.full((n, 3), albedo, dtype=p.dtype),
            "metallic": torch.full((n, 1), metallic, dtype=p.dtype),
            "roughness": torch.full((n, 1), 0.5, dtype=p.dtype),
        }

    return field


def test_fibonacci_sphere_is_unit_and_balanced():
    d = fibonacci_sphere(512)
    assert torch.allclose(d.norm(dim=-1), torch.ones(512), atol=1e-6)
    assert float(d.mean(0).norm()) < 0.01
    up = d[:, 2].clamp_min(0)  # the quadrature of cos/pi over the upper hemisphere is 1
    assert abs(float(up.sum() * 4 / 512) - 1.0) < 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_visibility_table_open_plane_and_box(backend):
    v, f = _quad(0.0, facing_up=True)
    table = visibility_table(MeshTracer(v, f, backend=backend), fibonacci_sphere(256))
    assert table.shape == (4, 256) and table.dtype == torch.float16
    assert torch.allclose(table.float().sum(1), torch.ones(4), atol=0.02)  # nothing blocks an open plane
    v2, f2 = _quad(0.5, facing_up=False, half=3.0)  # a wide roof over the plane blocks most of the sky
    table = visibility_table(
        MeshTracer(np.vstack([v, v2]), np.vstack([f, f2 + 4]), backend=backend), fibonacci_sphere(256)
    )
    assert float(table[:4].float().sum(1).max()) < 0.5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("albedo,metallic,expected", [(0.5, 0.0, 0.5 + 0.04), (0.8, 1.0, 0.8)])
def test_bounce_hand_values_under_a_roof(backend, albedo, metallic, expected):
    """A down-facing roof under a uniform white sky: Ebar = 1 at its vertices, so the light it sends down is
    albedo (1 - m) + F0 (the mirror term sees the sky)."""
    v, f = _quad(0.5, facing_up=False)
    tracer = MeshTracer(v, f, backend=backend)
    env = EnvironmentMap(4, 8, init=1.0)
    bounce = MeshBounce(tracer, _const_field(albedo, metallic), env, visibility_table(tracer, fibonacci_sphere(256)))
    x = torch.tensor([[0.1, 0.2, 0.0], [0.3, -0.2, 0.0], [0.0, 0.0, 0.0]])
    l = torch.tensor([[0.0, 0.0, 1.0], [0.3, 0.0, 0.954], [0.0, 0.0, -1.0]])  # the last misses the roof
    l = l / l.norm(dim=-1, keepdim=True)
    out = bounce(x, l)
    assert torch.allclose(out[:2], torch.full((2, 3), expected), atol=0.02)
    assert torch.equal(out[2], torch.zeros(3))
    out.sum().backward()  # the environment learns through the bounce
    assert env.log_radiance.grad is not None and float(env.log_radiance.grad.abs().sum()) > 0
