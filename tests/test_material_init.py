"""Stage II warm start (distillation, env bake, ``material.init``) and priors: hand values and a CLI smoke of a
``nero`` and a segmented run started from Stage I."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_runs import tiny_stage1_run

from lumisurf.cli import main
from lumisurf.config import MaterialStageConfig
from lumisurf.errors import ConfigError
from lumisurf.fields.material import MaterialField
from lumisurf.jobs.material_eval import per_material_errors
from lumisurf.jobs.material_init import resolve_init
from lumisurf.presets import preset_config
from lumisurf.shading.envmap import EnvironmentMap, latlong_directions
from lumisurf.train.material_priors import bake_env, distil_materials, env_priors, material_priors


def _cfg(**kw) -> MaterialStageConfig:
    cfg = MaterialStageConfig(**kw)
    cfg.grid.implementation = "torch"
    cfg.grid.n_levels, cfg.grid.log2_table_size, cfg.grid.max_resolution = 4, 12, 32
    return cfg


def test_distil_materials_fits_targets():
    torch.manual_seed(0)
    field = MaterialField(_cfg())
    x = torch.rand(2000, 3) * 2 - 1
    left = (x[:, :1] < 0).float()
    targets = {
        "albedo": torch.tensor([0.2, 0.4, 0.6]).expand(2000, 3),
        "metallic": 0.9 * left + 0.1 * (1 - left),
        "roughness": torch.full((2000, 1), 0.3),
    }
    l1 = distil_materials(field, x, targets, steps=150, lr=2e-2, batch=256, generator=torch.Generator().manual_seed(0))
    assert l1 < 0.05
    with torch.no_grad():
        m = field(torch.tensor([[-0.5, 0.1, 0.2], [0.5, 0.1, 0.2]]))
    assert abs(float(m["metallic"][0]) - 0.9) < 0.1 and abs(float(m["metallic"][1]) - 0.1) < 0.1
    assert torch.allclose(m["albedo"], torch.tensor([0.2, 0.4, 0.6]).expand(2, 3), atol=0.05)


def test_bake_env_matches_light_at_texel_centres():
    env = EnvironmentMap(8, 16)
    light = lambda d: torch.stack([1 + d[:, 2], 2 - d[:, 2], 0.5 + 0 * d[:, 0]], -1)  # noqa: E731
    bake_env(env, light)
    dirs, _ = latlong_directions(8, 16)
    assert torch.allclose(env.image(), light(dirs.reshape(-1, 3)).reshape(8, 16, 3), rtol=1e-5)
    with torch.no_grad():  # the look-up at a texel centre returns that texel
        assert torch.allclose(env(dirs[3, 5][None]), light(dirs[3, 5][None]), rtol=1e-4)


def test_material_priors_hand_values():
    cfg = _cfg(metallic_binary_weight=2.0, segment_weight=1.0, dielectric_weight=0.5)
    mat = {
        "metallic": torch.tensor([[0.5], [0.0], [1.0], [0.5]]),
        "roughness": torch.tensor([[0.2], [0.4], [0.6], [0.6]]),
    }
    out = material_priors(mat, cfg, segment=torch.tensor([0, 0, 1, 1]))
    assert math.isclose(float(out["metallic_binary"]), 2.0 * (0.25 + 0 + 0 + 0.25) / 4, rel_tol=1e-6)
    assert math.isclose(float(out["dielectric"]), 0.5 * 2.0 / 4, rel_tol=1e-6)
    # segment 0: metallic (0.5, 0) mean 0.25, roughness (0.2, 0.4) mean 0.3; segment 1: metallic (1, 0.5) mean
    # 0.75, roughness equal -> |dev| = 0.25 x 4 (metallic) + 0.1 x 2 (roughness), over 8 entries
    assert math.isclose(float(out["segment"]), (0.25 * 4 + 0.1 * 2) / 8, rel_tol=1e-5)
    assert "segment" not in material_priors(mat, cfg, segment=None)
    assert material_priors(mat, _cfg()) == {}


def test_env_priors_hand_values():
    cfg = _cfg(env_white_weight=1.0, env_tv_weight=1.0)
    env = EnvironmentMap(4, 8, init=1.0)
    out = env_priors(env, cfg)
    assert float(out["env_white"].detach()) < 1e-12 and float(out["env_tv"].detach()) == 0.0
    with torch.no_grad():
        env.log_radiance[..., 0] += math.log(2.0)  # red twice as bright everywhere
    out = env_priors(env, cfg)
    assert math.isclose(float(out["env_white"].detach()), 2.0 / 9.0 * math.log(2.0) ** 2, rel_tol=1e-5)
    assert float(out["env_tv"].detach()) == 0.0
    with torch.no_grad():
        env.log_radiance[:, 0] += 1.0  # one bright column: 2 of 8 steps in u are 1 in every row and channel
    assert math.isclose(float(env_priors(env, cfg)["env_tv"].detach()), 2.0 / 8.0, rel_tol=1e-5)
    env.log_radiance.requires_grad_(False)  # a known map has no prior
    assert env_priors(env, cfg) == {}


def test_resolve_init_by_preset():
    assert resolve_init(preset_config("nero")) == "stage1"
    assert resolve_init(preset_config("lumisurf-seg")) == "stage1"
    cfg = preset_config("lumisurf")
    assert resolve_init(cfg) == "constant"
    cfg.material.init = "materials"
    with pytest.raises(ConfigError, match="init=constant"):
        resolve_init(cfg)


def test_per_material_errors_by_id():
    preds = [
        {
            "albedo": torch.full((4, 3), 0.5),
            "roughness": torch.tensor([0.1, 0.1, 0.5, 0.7]),
            "metallic": torch.tensor([1.0, 0.8, 0.0, 0.2]),
        }
    ]
    gts = [
        {
            "albedo": torch.full((4, 3), 0.5),
            "roughness": torch.tensor([0.05, 0.05, 0.9, 0.9]),
            "metallic": torch.tensor([1.0, 1.0, 0.0, 0.0]),
            "matid": torch.tensor([1, 1, 2, 2]),
        }
    ]
    out = per_material_errors(preds, gts)
    assert math.isclose(out["metallic_mae_id1"], 0.1, rel_tol=1e-5) and math.isclose(
        out["metallic_mae_id2"], 0.1, rel_tol=1e-5
    )
    assert math.isclose(out["roughness_mae_id2"], 0.3, rel_tol=1e-5) and out["albedo_psnr_id1"] > 99.0
    assert per_material_errors(preds, [{k: v for k, v in gts[0].items() if k != "matid"}]) == {}


@pytest.mark.parametrize("preset", ["nero", "lumisurf-seg"])
def test_material_from_stage1_cli(tmp_path, preset):
    run = tiny_stage1_run(tmp_path / "run", preset)
    assert (
        main(
            [
                "material",
                str(run),
                "--steps",
                "2",
                "--no-progress",
                "--no-export",
                "batch_rays=64",
                "light_samples=8",
                "grid.implementation=torch",
                "init_steps=5",
                "metallic_binary_weight=0.1",
                "segment_weight=0.1",
                "env_white_weight=0.1",
                "env_tv_weight=0.01",
                "loss=decorrelated",
                "dielectric_weight=0.01",
                "indirect=bounce",
            ]
        )
        == 0
    )
    summary = json.loads((run / "material" / "summary.json").read_text())
    assert summary["init"] == "stage1" and math.isfinite(summary["init_l1"]) and math.isfinite(summary["loss"])
    assert summary["init_env_mean"] > 0 and summary["env_lr"] == 0.0  # the baked map is kept by default
    if preset == "lumisurf-seg":
        assert summary["segments"] >= 1


def test_decorrelated_l2_is_unbiased():
    from lumisurf.losses.photometric import decorrelated_l2

    assert float(decorrelated_l2(torch.tensor([[1.0]]), torch.tensor([[3.0]]), torch.tensor([[2.0]]))) == -1.0
    g = torch.Generator().manual_seed(0)
    n = 400_000
    a = 0.5 + 0.2 * torch.randn(n, 1, generator=g)
    b = 0.5 + 0.2 * torch.randn(n, 1, generator=g)
    t = torch.full((n, 1), 0.3)
    assert abs(float(decorrelated_l2(a, b, t)) - 0.04) < 2e-3  # (0.5 - 0.3)^2
    assert abs(float(((a - t) ** 2).mean()) - 0.08) < 2e-3  # one estimate adds its variance 0.04


def test_multilevel_env_map_adds_upsampled_coarse_levels():
    env = EnvironmentMap(8, 16, init=1.0, levels=3)
    assert [tuple(p.shape) for p in env.coarse] == [(4, 8, 3), (2, 4, 3)]
    assert torch.allclose(env.image(), torch.ones(8, 16, 3))
    with torch.no_grad():
        env.coarse[1].fill_(math.log(2.0))  # a constant coarse level scales the whole map
    assert torch.allclose(env.image(), torch.full((8, 16, 3), 2.0), rtol=1e-5)
    with torch.no_grad():
        env.coarse[1].zero_()
        env.coarse[0][:, 0] = 1.0  # one bright coarse column spreads to its neighbours across the u seam
    img = env.image().detach()
    assert (
        float(img[:, 0].min()) > 1.0 and float(img[:, -1].min()) > 1.0 and torch.allclose(img[:, 8], torch.ones(8, 3))
    )
    env.image().sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in env.parameters())
    env.set_image(torch.full((8, 16, 3), 3.0))  # a baked map lives in the full level; coarse levels reset
    assert torch.allclose(env.image(), torch.full((8, 16, 3), 3.0), rtol=1e-5)
