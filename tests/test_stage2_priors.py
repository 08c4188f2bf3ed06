"""Stage II light and priors of issue 35: the smooth (MLP) environment, its tether to the start, the early
saturation hinge, the albedo-weighted dielectric prior and tangent-plane material smoothness. Hand values."""

from __future__ import annotations

import json
import math

import torch
from tiny_runs import tiny_stage1_run

from lumisurf.cli import main
from lumisurf.config import MaterialStageConfig
from lumisurf.jobs.material import load_material_run
from lumisurf.shading.envmap import (
    EnvImportanceSampler,
    EnvironmentMap,
    latlong_directions,
    row_solid_angles,
    sample_latlong,
)
from lumisurf.shading.envmap_neural import NeuralEnvironment
from lumisurf.shading.monte_carlo import Strategy, latin_hypercube, shade
from lumisurf.train.material_priors import bake_env, env_priors, material_priors, saturation_hinge, tangent_jitter


def _smooth_light(d: torch.Tensor) -> torch.Tensor:
    """A sky brighter towards +z with a warm side towards +x (linear radiance)."""
    return torch.stack([torch.exp(0.8 * d[:, 2] + 0.3 * d[:, 0]), torch.exp(0.8 * d[:, 2]), 0.5 + 0 * d[:, 0]], -1)


def test_neural_env_starts_uniform_and_fits_a_smooth_light():
    torch.manual_seed(0)
    env = NeuralEnvironment(8, 16, init=0.7, hidden=32, layers=3, n_freqs=2)
    assert env.image().shape == (8, 16, 3) and env.trainable
    torch.testing.assert_close(env.image(), torch.full((8, 16, 3), 0.7))
    err = bake_env(env, _smooth_light)
    assert err is not None and err < 0.03  # mean |log error| of the fit
    dirs, _ = latlong_directions(8, 16)
    with torch.no_grad():
        rel = (env.image() / _smooth_light(dirs.reshape(-1, 3)).reshape(8, 16, 3) - 1).abs()
    assert float(rel.mean()) < 0.05
    # a look-up has a gradient on the MLP (every texel shares it)
    env(torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)).sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in env.mlp.parameters())


def test_neural_env_set_image_keeps_a_frozen_light_frozen():
    env = NeuralEnvironment(4, 8, init=1.0, hidden=16, layers=2, n_freqs=1)
    for p in env.parameters():
        p.requires_grad_(False)
    assert not env.trainable
    env.set_image(torch.full((4, 8, 3), 2.0), steps=200, lr=5e-2)
    torch.testing.assert_close(env.image(), torch.full((4, 8, 3), 2.0), rtol=2e-2, atol=0.0)
    assert not env.trainable


def test_env_tether_is_the_solid_angle_mean_log_step():
    cfg = MaterialStageConfig(env_tether_weight=2.0)
    for env in (EnvironmentMap(4, 8, init=1.0), NeuralEnvironment(4, 8, init=1.0, hidden=8, layers=2)):
        anchor = env.log_image().detach().clone()
        assert float(env_priors(env, cfg, anchor)["env_tether"].detach()) == 0.0
        assert env_priors(env, cfg, None) == {}  # no start recorded: no tether
    env = EnvironmentMap(4, 8, init=1.0)
    anchor = env.log_image().detach().clone()
    with torch.no_grad():
        env.log_radiance[0, :, 1] += 3.0  # the top row, green only
    omega = row_solid_angles(4, 8)
    expected = 2.0 * (3.0 / 3.0) * float(omega[0] / omega.sum())  # 1/3 of the channels, the top row's share
    got = float(env_priors(env, cfg, anchor)["env_tether"].detach())
    assert math.isclose(got, expected, rel_tol=1e-5)


def test_saturation_hinge_and_its_schedule():
    vals = torch.tensor([[0.5, 0.01], [0.995, 0.3]])
    # 0.02 - 0.01 below, 0.995 - 0.98 above
    assert math.isclose(float(saturation_hinge(vals, 0.02)), (0.01 + 0.015) / 2, rel_tol=1e-5)
    cfg = MaterialStageConfig(saturation_weight=10.0, saturation_margin=0.02, saturation_until=0.3, roughness_min=0.1)
    mat = {"metallic": torch.tensor([[1.0], [0.5]]), "roughness": torch.tensor([[0.1], [0.55]])}
    # metallic 1 is 0.02 past 0.98; roughness 0.1 is 0 on [0, 1], 0.02 below the margin
    out = material_priors(mat, cfg, progress=0.1)
    assert math.isclose(float(out["saturation"]), 10.0 * (0.02 + 0.02) / 2, rel_tol=1e-5)
    assert "saturation" not in material_priors(mat, cfg, progress=0.3)


def test_dielectric_prior_weighted_by_albedo_spares_bright_metal():
    cfg = MaterialStageConfig(dielectric_albedo_weight=1.0)
    albedo = torch.tensor([[1.0, 0.8, 0.3], [0.1, 0.1, 0.1]], requires_grad=True)  # gold, dark
    metallic = torch.tensor([[1.0], [1.0]], requires_grad=True)
    out = material_priors({"albedo": albedo, "metallic": metallic, "roughness": torch.full((2, 1), 0.5)}, cfg)
    assert math.isclose(float(out["dielectric_albedo"].detach()), (0.0 + 0.9) / 2, rel_tol=1e-5)
    out["dielectric_albedo"].backward()
    assert albedo.grad is None  # the albedo is not brightened to escape the prior
    torch.testing.assert_close(metallic.grad, torch.tensor([[0.0], [0.45]]))
    # gated by Stage I: the dark metal that Stage I called metal (0.9) is left alone, the other one is pushed
    gated = MaterialStageConfig(dielectric_albedo_weight=1.0, dielectric_albedo_gate="stage1")
    mat = {"albedo": albedo.detach(), "metallic": metallic.detach(), "roughness": torch.full((2, 1), 0.5)}
    out = material_priors(mat, gated, stage1_metallic=torch.tensor([0.2, 0.9]))
    assert math.isclose(float(out["dielectric_albedo"]), 0.0, abs_tol=1e-7)
    out = material_priors(mat, gated, stage1_metallic=torch.tensor([0.9, 0.2]))
    assert math.isclose(float(out["dielectric_albedo"]), 0.9 / 2, rel_tol=1e-5)


def test_tangent_jitter_stays_in_the_tangent_plane():
    n = torch.nn.functional.normalize(torch.randn(4000, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    j = tangent_jitter(n, 0.02, torch.Generator().manual_seed(0))
    assert float((j * n).sum(-1).abs().max()) < 1e-7
    # two of three Gaussian axes survive: E|j|^2 = 2 eps^2
    assert math.isclose(float((j * j).sum(-1).mean()), 2 * 0.02**2, rel_tol=0.05)


def test_material_with_a_smooth_tethered_light_cli(tmp_path, monkeypatch):
    run = tiny_stage1_run(tmp_path / "run", "nero")
    args = ["material", str(run), "--steps", "3", "--no-progress", "--no-export", "batch_rays=64"]
    args += ["light_samples=8", "grid.implementation=torch", "init_steps=5", "env_height=8", "env_model=mlp"]
    args += ["env_hidden=16", "baked_env_lr=1e-3", "env_tether_weight=1.0", "loss=log_l1", "smooth_tangent=true"]
    args += ["saturation_weight=1.0", "saturation_until=1.0", "dielectric_albedo_weight=0.1", "indirect=none"]
    assert main(args) == 0
    summary = json.loads((run / "material" / "summary.json").read_text())
    assert summary["env_lr"] == 1e-3 and summary["init_env_fit_log_l1"] < 1.0
    assert math.isfinite(summary["loss_env_tether"]) and math.isfinite(summary["loss_saturation"])
    mrun = load_material_run(run)  # the smooth light comes back from material.pt
    assert isinstance(mrun.lighting.env, NeuralEnvironment)
    saved = torch.load(run / "material" / "material.pt", weights_only=True)["lighting"]
    torch.testing.assert_close(mrun.lighting.env.mlp[-1].bias, saved["env.mlp.4.bias"])
    assert summary["init"] == "stage1" and summary["init_light_width"] >= 0.0  # the matched split's bake width
    mrun.cfg.material.relight_indirect = "none"
    assert _relight_strategies(mrun, tmp_path, monkeypatch) == [True, False]  # relights follow render_stratified


def _relight_strategies(mrun, tmp_path, monkeypatch) -> list[bool]:
    """Whether each relight render of ``relight_views`` got stratified directions, for render_stratified on / off."""
    import numpy as np

    from lumisurf.data.hdr import write_hdr
    from lumisurf.data.load import load_scene_normalized_as
    from lumisurf.jobs import material_eval

    write_hdr(tmp_path / "sky.hdr", np.ones((8, 16, 3), np.float32))
    seen = []

    def fake_render(*a, strategy=None, **k):
        seen.append(strategy.stratified)
        return torch.zeros(2, 2, 3), torch.ones(2, 2)

    monkeypatch.setattr(material_eval, "render_mesh_view", fake_render)
    split = load_scene_normalized_as(mrun.cfg.data, mrun.normalization).split("train")
    for flag in (True, False):
        mrun.cfg.material.render_stratified = flag
        list(material_eval.relight_views(mrun, split, tmp_path / "sky.hdr", None, 1, 4, max_views=1, progress=False))
    return seen


def test_latin_hypercube_puts_one_point_in_every_row_and_column():
    pts = latin_hypercube(50, 8, torch.Generator().manual_seed(0))
    assert pts.shape == (50, 8, 2) and float(pts.min()) >= 0.0 and float(pts.max()) < 1.0
    cells = (pts * 8).long()  # [50, 8, 2] grid cell of each point
    for axis in (0, 1):
        assert torch.equal(cells[..., axis].sort(1).values, torch.arange(8).expand(50, 8))
    assert latin_hypercube(3, 0, None).shape == (3, 0, 2)


def test_stratified_directions_keep_the_mean_and_lower_the_noise():
    """A metal under a sky that brightens towards +z: 400 estimates with 16 directions each, independent and
    Latin-hypercube; the stratified mean agrees with the independent one and its spread is lower."""
    n, g = 400, torch.Generator().manual_seed(3)
    x, normals = torch.zeros(n, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3)
    wo = torch.nn.functional.normalize(torch.tensor([[0.4, 0.0, 1.0]]), dim=-1).expand(n, 3)
    sky = lambda p, l, blocked: (1.0 + 2.0 * l[:, 2:3].clamp_min(0)).expand(-1, 3)  # noqa: E731
    mat = (torch.full((n, 3), 0.8), torch.full((n, 1), 0.5), torch.full((n, 1), 0.4))

    def estimates(stratified: bool) -> torch.Tensor:
        return shade(x, normals, wo, *mat, sky, None, 16, Strategy(0.5, 0.5, stratified=stratified), g)[:, 0]

    plain, strat = estimates(False), estimates(True)
    se = float((plain.var() / n + strat.var() / n).sqrt())
    assert abs(float(plain.mean() - strat.mean())) < 4 * se
    assert float(strat.std()) < 0.7 * float(plain.std())


def test_stratified_environment_draws_keep_the_mean():
    dirs, _ = latlong_directions(16, 32)
    img = (1.0 + 20.0 * (dirs[..., 2:3] > 0.9).float()).expand(16, 32, 3).contiguous()  # a bright cap at +z
    sampler = EnvImportanceSampler(img)
    u = torch.rand(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, pa = sampler.sample(64, uniforms=u)
    b, pb = sampler.sample(64, torch.Generator().manual_seed(0))  # the same numbers drawn inside
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(pa, pb)
    n, g = 400, torch.Generator().manual_seed(5)
    x, normals = torch.zeros(n, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3)
    mat = (torch.full((n, 3), 0.8), torch.full((n, 1), 1.0), torch.full((n, 1), 0.4))
    sky = lambda p, l, blocked: sample_latlong(img, l)  # noqa: E731
    est = [
        shade(x, normals, normals, *mat, sky, None, 16, Strategy(0.25, 0.25, 0.5, stratified=s), g, sampler)[:, 0]
        for s in (False, True)
    ]
    se = float((est[0].var() / n + est[1].var() / n).sqrt())
    assert abs(float(est[0].mean() - est[1].mean())) < 4 * se
    assert float(est[1].std()) < float(est[0].std())


def test_relight_scores_align_the_shown_render():
    """A render at half the GT's linear level aligns to it exactly; one highlight at 20x white (the GT shows
    1.0 there) no longer drags the scale down: the render is clipped to [0, 1] before the fit."""
    from lumisurf.data.color_space import linear_to_srgb
    from lumisurf.jobs.material_eval import relight_view_scores

    lin = torch.linspace(0.05, 0.45, 16 * 16 * 3).reshape(16, 16, 3)
    gt, ones = linear_to_srgb(lin), torch.ones(16, 16)
    half = relight_view_scores(lin / 2, ones, gt, ones[..., None], 1.0)
    assert half["relight_psnr"] < 20.0 and half["relight_psnr_scaled"] > 60.0
    hot = lin.clone()
    hot[0, 0] = 20.0
    gt_hot = gt.clone()
    gt_hot[0, 0] = 1.0
    s = relight_view_scores(hot, ones, gt_hot, ones[..., None], 1.0)
    assert s["relight_psnr"] > 60.0 and s["relight_psnr_scaled"] > 60.0  # unclipped, the fit scaled by ~0.1
