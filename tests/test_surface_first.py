"""Surface-first rendering: the tracer's hand values on an exact sphere, the band, and agreement with full
volume rendering on a small model (rgb, opacity, depth, normals; the background skip; the messy-field switch)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from lumisurf.config import BackgroundConfig, ColorConfig, ModelConfig, SamplerConfig, SDFConfig
from lumisurf.eval.image_metrics import psnr
from lumisurf.models.surface import RenderState, SurfaceModel
from lumisurf.renderers.surface_first import (
    TraceResult,
    band_half_width,
    band_samples,
    clear_of_surface,
    descend,
    exit_trace,
    sphere_trace,
    trusted_hits,
)
from lumisurf.sampler_config import SurfaceRenderConfig


def _sphere(points: Tensor) -> Tensor:  # exact SDF of |x| = 0.5
    return points.norm(dim=-1) - 0.5


def _rays_along_x(offsets: list[float], x0: float = -2.0) -> tuple[Tensor, Tensor]:
    o = torch.tensor([[x0, y, 0.0] for y in offsets])
    d = torch.tensor([[1.0, 0.0, 0.0]]).expand(len(offsets), 3).contiguous()
    return o, d


def test_sphere_trace_finds_the_first_crossing_of_a_sphere():
    ys = [0.0, 0.3, 0.49]
    o, d = _rays_along_x(ys)
    tr = sphere_trace(_sphere, o, d, torch.zeros(3), torch.full((3,), 4.0), max_steps=64, min_step=1e-4)
    assert tr.hit.all() and tr.done.all()
    for i, y in enumerate(ys):
        half_chord = math.sqrt(0.25 - y * y)
        assert tr.t[i].item() == pytest.approx(2.0 - half_chord, abs=1e-5)
        assert tr.slope[i].item() == pytest.approx(half_chord / 0.5, rel=0.05)  # |cos| at the entry point
    assert torch.isinf(tr.clearance[:2]).all()  # straight approaches: no local minimum before the crossing
    assert tr.evals > 0


def test_sphere_trace_records_how_close_a_miss_came():
    o, d = _rays_along_x([0.55, 0.9])
    tr = sphere_trace(_sphere, o, d, torch.zeros(2), torch.full((2,), 4.0), max_steps=128, min_step=1e-4)
    assert not tr.hit.any() and tr.done.all()
    assert tr.clearance[0].item() == pytest.approx(0.05, abs=5e-3)  # the SDF's minimum along the ray
    assert tr.clearance[1].item() == pytest.approx(0.40, abs=2e-2)
    assert tr.t_close[0].item() == pytest.approx(2.0, abs=0.06)


def test_sphere_trace_does_not_finish_inside_or_out_of_steps():
    o = torch.tensor([[0.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    tr = sphere_trace(_sphere, o, d, torch.zeros(2), torch.full((2,), 4.0), max_steps=2)
    assert not tr.done.any() and not tr.hit.any()


def test_exit_trace_leaves_through_a_receding_stretch_only():
    o = torch.tensor([[0.0, 0.0, 0.0], [-0.45, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    t, ok = exit_trace(_sphere, o, d, torch.zeros(2), torch.full((2,), 4.0), max_steps=64, min_step=1e-4)
    assert ok[0] and t[0].item() == pytest.approx(0.5, abs=2e-3)  # centre -> surface: the SDF only rises
    assert not ok[1]  # the second ray goes deeper first (the SDF falls): the band would miss that density


def test_band_half_width_and_samples_hand_values():
    half = band_half_width(torch.tensor([0.5, 1.0, 0.01]), inv_s=100.0, width=10.0)
    assert torch.allclose(half, torch.tensor([0.2, 0.1, 1.0]))  # slope 0.01 is clamped to 0.1
    t, end = band_samples(
        torch.tensor([0.8, -0.15]), torch.tensor([1.2, 0.25]), torch.tensor([0.0, 0.0]), torch.tensor([5.0, 0.1]), 4
    )
    assert torch.allclose(t[0], torch.tensor([0.8, 0.9, 1.0, 1.1])) and end[0, 0].item() == pytest.approx(1.2)
    assert torch.allclose(t[1], torch.tensor([0.0, 0.025, 0.05, 0.075])) and end[1, 0].item() == pytest.approx(0.1)


def test_descend_stops_at_the_floor_or_the_bottom_of_a_thin_part():
    o, d = _rays_along_x([0.0, 0.45])
    t_hit = 2.0 - torch.tensor([0.5, math.sqrt(0.25 - 0.45**2)])
    stop = descend(_sphere, o, d, t_hit, torch.full((2,), 4.0), floor=-0.1, max_steps=64, min_step=1e-4)
    assert 1.5 + 0.1 <= stop[0].item() < 1.5 + 0.2  # SDF -0.1 is 0.1 inside along the axis (one step past)
    # the off-axis chord is shallower than the floor (its SDF bottoms out at 0.45 - 0.5): it stops past x = 0
    assert 2.0 <= stop[1].item() < 2.0 + math.sqrt(0.25 - 0.45**2)


def test_trusted_hits_and_clear_rays():
    tr = TraceResult(
        t=torch.zeros(4),
        slope=torch.ones(4),
        hit=torch.tensor([True, True, False, False]),
        clearance=torch.tensor([float("inf"), 0.01, 0.2, 0.01]),
        t_close=torch.zeros(4),
        done=torch.tensor([True, True, True, True]),
    )
    assert trusted_hits(tr, 100.0, 8.0).tolist() == [True, False, False, False]
    assert clear_of_surface(tr, 100.0, 8.0).tolist() == [False, False, True, False]


# ---------------------------------------------------------------- agreement with full volume rendering
def _model(background: str = "constant", inv_s: float = 300.0) -> SurfaceModel:
    torch.manual_seed(0)
    sdf = SDFConfig(hidden=64, layers=3, skip_in=(), multires=0, feature_dim=4, init_radius=0.5)
    model_cfg = ModelConfig(
        sdf=sdf,
        color=ColorConfig(hidden=16, layers=2, multires_view=1),
        background=BackgroundConfig(kind=background, hidden=16, layers=2, n_samples=8),
    )
    sampler = SamplerConfig(
        n_samples=32,
        n_importance=32,
        up_sample_steps=2,
        perturb=False,
        occupancy=True,
        occupancy_resolution=32,
        occupancy_march_steps=64,
    )
    model = SurfaceModel(model_cfg, sampler, background).eval()
    with torch.no_grad():
        model.variance.variance.fill_(math.log(inv_s) / 10.0)
    model.occupancy.update(model.sdf.sdf, inv_s)
    return model


def _camera_rays(n: int = 32) -> tuple[Tensor, Tensor]:
    """A pinhole camera at (0, 0.3, -2.2) looking at the origin, n x n rays over a 40 degree field."""
    u = torch.linspace(-0.36, 0.36, n)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    eye = torch.tensor([0.0, 0.3, -2.2])
    fwd = -eye / eye.norm()
    right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), fwd)
    right = right / right.norm()
    up = torch.linalg.cross(fwd, right)
    d = fwd + xx.reshape(-1, 1) * right + yy.reshape(-1, 1) * up
    return eye.expand(n * n, 3).contiguous(), d / d.norm(dim=-1, keepdim=True)


def _render(model: SurfaceModel, surface: bool, bg: Tensor) -> dict[str, Tensor]:
    o, d = _camera_rays()
    state = RenderState(1.0, False, None, SurfaceRenderConfig(enabled=surface))
    with torch.no_grad():
        return model(o, d, bg.expand(o.shape[0], 3), state, need_grad_graph=False)


@pytest.mark.parametrize("background", ["constant", "nerf++"])
def test_surface_first_matches_full_volume_rendering(background):
    model = _model(background)
    bg = torch.tensor([0.2, 0.4, 0.6])
    full, fast = _render(model, False, bg), _render(model, True, bg)
    assert (full["opacity"] > 0.99).sum() > 100 and (full["opacity"] < 0.01).sum() > 100  # object and empty space
    assert psnr(fast["rgb"].clamp(0, 1), full["rgb"].clamp(0, 1)) > 45.0
    assert (fast["opacity"] - full["opacity"]).abs().max() < 2e-2
    solid = (full["opacity"] > 0.99)[:, 0]
    depth_err = (fast["depth"] - full["depth"])[solid].abs()
    normal_err = (fast["normal"] - full["normal"])[solid].norm(dim=-1)
    assert depth_err.mean() < 1e-3 and depth_err.max() < 2e-2
    assert normal_err.mean() < 2e-3 and normal_err.max() < 5e-2  # 0.05: about 3 degrees at one edge pixel
    assert fast["samples_per_ray"] < 0.5 * full["samples_per_ray"]


def test_a_blurry_field_takes_the_full_sampler():
    model = _model(inv_s=4.0)  # density smeared over the whole sphere: every ray is a near miss or semi-transparent
    bg = torch.tensor([1.0, 1.0, 1.0])
    full, fast = _render(model, False, bg), _render(model, True, bg)
    assert torch.allclose(fast["rgb"], full["rgb"], atol=1e-5)
    assert torch.allclose(fast["depth"], full["depth"], atol=1e-5)
