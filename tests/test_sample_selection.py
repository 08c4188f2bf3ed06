"""Cheaper training samples: the last up-sampling step's unused evaluation, NeuS section weights, significant-sample
selection (render with gradients only where the weight can matter), the occupancy grid's SDF cache and its
partial refresh."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from lumisurf.config import BackgroundConfig, ColorConfig, ModelConfig, SamplerConfig, SDFConfig
from lumisurf.errors import ConfigError
from lumisurf.models.surface import RenderState, SurfaceModel
from lumisurf.samplers.occupancy import OccupancyGrid
from lumisurf.samplers.ray_samplers import (
    merge_samples,
    near_far_sphere,
    neus_upsample,
    section_weights,
    significant_samples,
    stratified_samples,
)


def _model(**sampler) -> SurfaceModel:
    torch.manual_seed(0)
    sdf = SDFConfig(hidden=32, layers=3, skip_in=(), multires=0, feature_dim=4, init_radius=0.5)
    cfg = ModelConfig(
        sdf=sdf,
        color=ColorConfig(hidden=16, layers=2, multires_view=1),
        background=BackgroundConfig(kind="constant"),
        init_variance=0.6,
    )  # inv_s = e^6 ~ 403
    base = dict(n_samples=16, n_importance=16, up_sample_steps=2, perturb=False)
    return SurfaceModel(cfg, SamplerConfig(**{**base, **sampler}), "constant")


def _rays(n: int = 24, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Rays from a sphere of radius 2.5 towards points within 0.6 of the centre (most cross the r=0.5 sphere)."""
    gen = torch.Generator().manual_seed(seed)
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1) * 2.5
    d = torch.nn.functional.normalize((torch.rand(n, 3, generator=gen) - 0.5) * 1.2 - o, dim=-1)
    return o, d


class _Counter:
    """Wraps an SDF callable and counts the points it is asked for."""

    def __init__(self, fn):
        self.fn, self.points = fn, 0

    def __call__(self, x: Tensor) -> Tensor:
        self.points += x.shape[0]
        return self.fn(x)


# ---------------------------------------------------------------- the last up-sampling step
def _old_sample_t(model: SurfaceModel, o, d, near, far) -> Tensor:
    """The sampler before the change: every up-sampling step's new samples evaluated, the last ones too."""
    cfg = model.sampler_cfg
    t = stratified_samples(near, far, cfg.n_samples, False)
    sdf = model.sdf.sdf((o[:, None] + d[:, None] * t[..., None]).reshape(-1, 3)).reshape(t.shape)
    per_step = cfg.n_importance // cfg.up_sample_steps
    for i in range(cfg.up_sample_steps):
        new_t = neus_upsample(o, d, t, sdf, per_step, 64.0 * 2**i)
        new_sdf = model.sdf.sdf((o[:, None] + d[:, None] * new_t[..., None]).reshape(-1, 3)).reshape(new_t.shape)
        t, order = merge_samples(t, new_t)
        sdf = torch.gather(torch.cat([sdf, new_sdf], -1), 1, order)
    return t


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_last_up_sampling_step_is_not_evaluated_and_samples_are_identical(steps):
    model = _model(up_sample_steps=steps)
    o, d = _rays()
    near, far, _ = near_far_sphere(o, d, 1.0)
    with torch.no_grad():
        expected = _old_sample_t(model, o, d, near, far)
        model.sdf.sdf = counter = _Counter(model.sdf.sdf)
        samples = model._sample_t(o, d, near, far, RenderState(perturb=False))
    assert torch.equal(samples.t, expected)  # bit for bit
    per_step = 16 // steps
    assert counter.points == o.shape[0] * (16 + 16 - per_step)  # NeuS' last=True: one step's evaluations saved
    assert samples.evals == 16 + 16 - per_step and samples.keep is None


# ---------------------------------------------------------------- section weights and selection
def test_section_weights_hand_values():
    """A ray entering a plane: sdf = 0.6 - t at t = 0, 0.25, ..., 1. The crossing (t = 0.6) lies in interval 2."""
    o, d = torch.tensor([[0.0, 0.0, -0.5]]), torch.tensor([[0.0, 0.0, 1.0]])  # every sample inside the sphere
    t = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]])
    w = section_weights(o, d, t, 0.6 - t, 1000.0)
    assert w.shape == (1, 4)
    # NeuS' stabiliser gives empty intervals an opacity of 1e-5 (so a threshold must sit above it)
    assert w[0, 2] > 0.99 and w[0, [0, 1, 3]].max() < 2e-5
    # a softer density spreads the weight over the neighbours, never beyond 1 in total
    soft = section_weights(o, d, t, 0.6 - t, 8.0)
    assert soft[0, 1] > 1e-3 and soft.sum() <= 1.0 + 1e-6
    # a ray passing clear of the surface carries (almost) no weight; a near miss does (the estimate extrapolates
    # with the steeper of two slopes: NeuS' conservative choice, so up-sampling looks there)
    assert section_weights(o, d, t, 0.3 + (t - 0.5) ** 2, 1000.0).max() < 2e-5
    assert section_weights(o, d, t, 0.05 + (t - 0.5) ** 2, 1000.0).max() > 0.5


def test_significant_samples_hand_values():
    t_ref = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    w = torch.tensor([[0.0, 0.0, 0.5, 0.0, 0.0]])  # interval 2 matters; 1 and 3 are kept as the margin
    t = torch.arange(0.0, 5.5, 0.5)[None]  # a refinement: every t_ref sample plus the mid points
    keep = significant_samples(t_ref, w, t, 1e-3)
    assert keep.tolist() == [[False, False, True, True, True, True, True, True, False, False, False]]
    also = torch.tensor([[True, False, False, False, False]])
    assert significant_samples(t_ref, w, t, 1e-3, also=also)[0, :2].tolist() == [True, True]
    assert not significant_samples(t_ref, w, t, 0.9).any()


def test_selected_render_matches_the_full_render_and_gradients():
    """Rendering with gradients only the significant samples gives the same pixels (to the weight the skipped
    samples carry) and nearly the same parameter gradients, with fewer field evaluations."""
    o, d = _rays(32)
    bg = torch.full((32, 3), 0.3)
    outs, grads = [], []
    for mode in ("all", "significant"):
        model = _model(render_samples=mode, significant_threshold=1e-4, eikonal_points=0).train()
        out = model(o, d, bg, RenderState(perturb=False))
        loss = (out["rgb"] * torch.linspace(0.5, 1.5, 3)).sum() + out["opacity"].sum()
        grads.append(
            torch.cat(
                [g.reshape(-1) for g in torch.autograd.grad(loss, [*model.sdf.parameters(), model.variance.variance])]
            )
        )
        outs.append(out)
    full, sel = outs
    assert sel["opacity"].max() > 0.9  # rays do reach the surface
    assert (sel["rgb"] - full["rgb"]).abs().max() < 1e-3 and (sel["opacity"] - full["opacity"]).abs().max() < 1e-3
    assert sel["samples_per_ray"] < full["samples_per_ray"]
    assert sel["gradients"].shape[0] < full["gradients"].shape[0]
    # the skipped samples' share of the gradient: a few percent at a 1e-4 threshold (the tails of the logistic
    # density in front of the surface), measured 4.7 % here, 0.4 % at 3e-5
    g_full, g_sel = grads
    assert (g_full - g_sel).norm() < 0.1 * g_full.norm()
    assert torch.nn.functional.cosine_similarity(g_full, g_sel, dim=0) > 0.995


def test_eikonal_points_join_the_selected_samples():
    model = _model(render_samples="significant", eikonal_points=50).train()
    o, d = _rays(8)
    out = model(o, d, torch.zeros(8, 3), RenderState(perturb=False))
    plain = _model(render_samples="significant", eikonal_points=0).train()(
        o, d, torch.zeros(8, 3), RenderState(perturb=False)
    )
    assert out["gradients"].shape[0] == plain["gradients"].shape[0] + 50
    assert out["inside"].shape[0] == out["gradients"].shape[0] and out["gradients"].requires_grad
    assert torch.equal(out["rgb"], plain["rgb"])  # extra points change no pixel
    with torch.no_grad():  # evaluation renders never select
        assert (
            model.eval()(o, d, torch.zeros(8, 3), RenderState(perturb=False), need_grad_graph=False)["gradients"].shape[
                0
            ]
            == 8 * 32
        )


# ---------------------------------------------------------------- occupancy: SDF cache, partial refresh
def test_coarse_sdf_cache_is_trilinear_in_the_refresh_values():
    grid = OccupancyGrid(16)
    assert grid.coarse_sdf(torch.zeros(3, 3)) is None  # no refresh yet
    linear = lambda x: x[:, 0] + 2.0 * x[:, 1] - 0.5 * x[:, 2] + 0.1  # noqa: E731 (trilinear interpolation is exact)
    grid.update(linear, 100.0)
    x = (torch.rand(500, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1) * (1 - grid.cell_size / 2)
    assert torch.allclose(grid.coarse_sdf(x), linear(x), atol=1e-5)
    sphere = lambda x: x.norm(dim=-1) - 0.5  # noqa: E731
    grid = OccupancyGrid(64)
    grid.update(sphere, 100.0)
    shell = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1) * 0.5
    assert grid.coarse_sdf(shell).abs().max() < 0.2 * grid.cell_size  # near the surface: a fraction of a cell


def test_partial_refresh_follows_a_moving_surface():
    """After a full refresh, a partial one (occupied cells, their neighbours, a random few others) marks the same
    cells as a full refresh would for a surface that moved less than a cell, and evaluates far fewer."""
    grid, full = OccupancyGrid(32), OccupancyGrid(32)
    grid.update(lambda x: x.norm(dim=-1) - 0.5, 50.0)
    moved = lambda x: x.norm(dim=-1) - 0.53  # noqa: E731  (a cell is 0.0625)
    counter = _Counter(moved)
    frac = grid.update(counter, 50.0, explore=0.05, generator=torch.Generator().manual_seed(0))
    full.update(moved, 50.0)
    assert torch.equal(grid.occupied, full.occupied) and math.isclose(frac, float(full.occupied.float().mean()))
    assert counter.points < 0.35 * 32**3
    x = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1) * 0.53
    assert grid.coarse_sdf(x).abs().max() < 0.02  # the cache follows the evaluated cells


def test_partial_refresh_finds_a_new_surface_far_from_the_old():
    grid = OccupancyGrid(16)
    grid.update(lambda x: x.norm(dim=-1) - 0.3, 50.0)
    blob = lambda x: torch.minimum(x.norm(dim=-1) - 0.3, (x - torch.tensor([0.7, 0.0, 0.0])).norm(dim=-1) - 0.1)  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    far_cell = grid.lookup(torch.tensor([[0.7, 0.0, 0.0]]))
    assert not far_cell.any()
    for _ in range(40):  # explore 0.25: each cell is drawn with probability 1/4 a refresh
        grid.update(blob, 50.0, explore=0.25, generator=gen)
    assert grid.lookup(torch.tensor([[0.7, 0.0, 0.0]])).all()


@pytest.mark.parametrize(
    "bad",
    [
        dict(coarse_sdf="occupancy"),
        dict(occupancy=True, occupancy_explore=0.0),
        dict(significant_threshold=-1.0),
        dict(eikonal_points=-5),
    ],
)
def test_sampler_settings_the_model_cannot_use(bad):
    with pytest.raises(ConfigError):
        _model(**bad)
