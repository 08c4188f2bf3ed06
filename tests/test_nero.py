"""NeRO Stage I shading: IPE, occlusion march and loss, the shading network and its place in the model."""

import math
from dataclasses import replace

import pytest
import torch

from lumisurf.config import Config, NeroConfig
from lumisurf.data.color_space import linear_to_srgb
from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.encodings.ipe import IPEncoding, integrated_positional_encoding
from lumisurf.losses.occlusion import occlusion_loss
from lumisurf.renderers.occlusion import entering_alpha, march_occlusion
from lumisurf.shading.nero import NeroShading
from lumisurf.shading.split_sum import compute_lut

SMALL_LUT = torch.from_numpy(compute_lut(16, 64))  # [16, 16, 2]; the real table is 256 x 256
TINY = NeroConfig(hidden=16, layers=2, weight_norm=False, ide_degree=4, pos_freqs=3, dir_freqs=2)


def _sphere_sdf(radius: float = 0.5):
    return lambda x: x.norm(dim=-1) - radius


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


# ----------------------------------------------------------------------------- IPE
def test_ipe_limits_and_shapes():
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(5, 7, 3, generator=g) * 2 - 1
    plain = FrequencyEncoding(3, 4, include_input=False)(mean)
    enc = integrated_positional_encoding(mean, torch.zeros(5, 7, 1), 4)
    assert enc.shape == (5, 7, 24) and IPEncoding(3, 4).output_dim == 24
    assert torch.allclose(enc, plain, atol=1e-6)  # variance -> 0: the frequency encoding
    assert integrated_positional_encoding(mean, torch.full((5, 7, 3), 1e4), 4).abs().max() < 1e-6
    # hand value: one coordinate, var 0.5, frequencies 1 and 2 -> exp(-var f^2 / 2) sin / cos(f mu)
    v = integrated_positional_encoding(torch.tensor([0.3]), torch.tensor([0.5]), 2)
    want = [
        math.exp(-0.25) * math.sin(0.3),
        math.exp(-0.25) * math.cos(0.3),
        math.exp(-1.0) * math.sin(0.6),
        math.exp(-1.0) * math.cos(0.6),
    ]
    assert torch.allclose(v, torch.tensor(want), atol=1e-6)


def test_ipe_gradcheck():
    mean = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
    var = torch.rand(3, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, v: integrated_positional_encoding(m, v, 3), (mean, var))


# ----------------------------------------------------------------------------- occlusion
def test_entering_alpha_by_hand():
    t = torch.tensor([[0.0, 1.0, 2.0]])
    sdf = torch.tensor([[1.0, -1.0, 0.5]])
    a = entering_alpha(t, sdf, 1.0)
    s1, sm1 = torch.sigmoid(torch.tensor(1.0)), torch.sigmoid(torch.tensor(-1.0))
    assert a.shape == (1, 2)
    assert torch.isclose(a[0, 0], (s1 - sm1 + 1e-5) / (s1 + 1e-5))
    assert a[0, 1] == 0  # the SDF rises: the ray leaves a surface


def test_march_occlusion_on_sphere():
    sdf = _sphere_sdf(0.5)
    g = torch.Generator().manual_seed(1)
    dirs = _unit(torch.randn(32, 3, generator=g))
    kw = dict(inv_s=200.0, n_steps=128)
    outward = march_occlusion(sdf, 0.5 * dirs, dirs, **kw)  # surface points leaving the sphere
    inward = march_occlusion(sdf, 0.8 * dirs, -dirs, **kw)  # outside it, heading to its centre
    assert outward.shape == (32, 1) and outward.max() < 1e-3
    assert inward.min() > 0.99
    grazing = march_occlusion(
        sdf, torch.tensor([[0.6, -0.7, 0.0], [0.0, 0.5, 0.0]]), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), **kw
    )  # miss; tangent
    assert grazing.max() < 1e-2
    outside = march_occlusion(sdf, torch.tensor([[1.5, 0.0, 0.0]]), torch.tensor([[-1.0, 0.0, 0.0]]), **kw)
    assert outside.item() == 0.0  # starts outside the unit sphere
    # a soft SDF (small inv_s) gives a partial probability
    soft = march_occlusion(sdf, torch.tensor([[0.8, 0.0, 0.0]]), torch.tensor([[-1.0, 0.0, 0.0]]), 5.0, 128)
    assert 0.3 < soft.item() < 0.99


def test_march_occlusion_evaluates_only_occupied_cells():
    """With an occupancy grid, the march asks the SDF only in occupied cells and gives the same probabilities:
    rays from one sphere, some of them blocked by a second one."""
    from lumisurf.samplers.occupancy import OccupancyGrid

    def two_spheres(x):
        a = (x - torch.tensor([-0.3, 0.0, 0.0])).norm(dim=-1) - 0.25
        return torch.minimum(a, (x - torch.tensor([0.35, 0.0, 0.0])).norm(dim=-1) - 0.2)

    grid = OccupancyGrid(64)
    grid.update(two_spheres, 200.0)
    g = torch.Generator().manual_seed(3)
    n = _unit(torch.randn(200, 3, generator=g) + torch.tensor([1.5, 0.0, 0.0]))  # mostly towards the other sphere
    pts = torch.tensor([-0.3, 0.0, 0.0]) + 0.25 * n
    dirs = _unit(torch.tensor([1.0, 0.0, 0.0]) + 0.6 * torch.randn(200, 3, generator=g))
    dirs = torch.where(((dirs * n).sum(-1, keepdim=True) > 0), dirs, -dirs)  # leaving the surface
    asked = []

    def counted(x):
        asked.append(x.shape[0])
        return two_spheres(x)

    full = march_occlusion(two_spheres, pts, dirs, 200.0, 64)
    skipped = march_occlusion(counted, pts, dirs, 200.0, 64, occupied_fn=grid.lookup)
    assert 20 < (full > 0.5).sum() < 180  # some rays are blocked, some escape
    assert (full - skipped).abs().max() < 1e-3
    assert sum(asked) < 0.3 * 200 * 64


def test_occlusion_loss_by_hand():
    pred, target = torch.tensor([[0.2], [0.9]]), torch.tensor([[0.0], [1.0]])
    assert torch.isclose(occlusion_loss(pred, target), torch.tensor(0.15))
    # smooth L1 with beta 0.5: 0.5 d^2 / beta for |d| < beta
    assert torch.isclose(occlusion_loss(pred, target, beta=0.5), torch.tensor((0.04 + 0.01) / 2))
    assert occlusion_loss(torch.zeros(0, 1), torch.zeros(0, 1)).item() == 0.0


# ----------------------------------------------------------------------------- shading
def _inputs(n: int = 64, feat: int = 8, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pts = (torch.rand(n, 3, generator=g) - 0.5).to(dtype)
    normals = torch.randn(n, 3, generator=g).to(dtype) * 2.0  # unnormalised gradients
    view = _unit(torch.randn(n, 3, generator=g)).to(dtype)
    view = torch.where(((view * normals).sum(-1, keepdim=True) > 0), -view, view)  # facing the camera
    return pts, normals, view, torch.randn(n, feat, generator=g).to(dtype)


def test_shading_shapes_and_ranges():
    torch.manual_seed(0)
    net = NeroShading(TINY, 8, lut=SMALL_LUT)
    pts, normals, view, feat = _inputs()
    out = net(pts, normals, view, feat)
    shapes = {
        "rgb": 3,
        "albedo": 3,
        "metallic": 1,
        "roughness": 1,
        "occ_prob": 1,
        "occ_raw": 1,
        "diffuse": 3,
        "specular": 3,
        "reflected": 3,
    }
    for key, c in shapes.items():
        assert out[key].shape == (64, c), key
    for key in ("rgb", "albedo", "metallic", "roughness", "occ_prob"):
        assert out[key].min() >= 0 and out[key].max() <= 1, key
    assert (out["diffuse"] >= 0).all() and (out["specular"] >= 0).all()
    n = _unit(normals)
    r = out["reflected"]
    assert torch.allclose(r.norm(dim=-1), torch.ones(64), atol=1e-5)
    assert torch.allclose((r * n).sum(-1), -(view * n).sum(-1), atol=1e-5)  # angle of reflection
    # NeRO's initial occlusion is small (bias -0.95 -> 0.025 before the weights' contribution)
    assert out["occ_prob"].mean() < 0.3


def test_metal_mirror_specular_by_hand():
    """metallic = 1, roughness -> 0: diffuse = 0 and specular = light (albedo * scale + bias) with (scale,
    bias) read from the table's first row at n.v by hand."""
    torch.manual_seed(0)
    net = NeroShading(TINY, 8, lut=SMALL_LUT)
    albedo = torch.tensor([0.2, 0.5, 0.8])
    heads = net.materials
    with torch.no_grad():
        for mlp, bias in ((heads.metallic, [40.0]), (heads.roughness, [-40.0]), (heads.albedo, torch.logit(albedo))):
            mlp[-1].weight.zero_()
            mlp[-1].bias.copy_(torch.as_tensor(bias))
    pts, normals, view, feat = _inputs(16)
    out = net(pts, normals, view, feat)
    assert torch.allclose(out["metallic"], torch.ones(16, 1)) and out["roughness"].max() < 1e-12
    assert out["diffuse"].abs().max() == 0
    nv = (-(view * _unit(normals)).sum(-1)).clamp(0, 1)
    x = (nv * 16 - 0.5).clamp(0, 15)
    x0 = x.floor().long().clamp(max=14)
    f = (x - x0)[:, None]
    sb = SMALL_LUT[0, x0] * (1 - f) + SMALL_LUT[0, x0 + 1] * f  # [16, 2]
    want = out["specular_light"] * (albedo * sb[:, :1] + sb[:, 1:])
    assert torch.allclose(out["specular"], want, atol=1e-6)
    assert torch.allclose(out["rgb"], linear_to_srgb(want).clamp(0, 1), atol=1e-6)


def test_human_light_term():
    torch.manual_seed(0)
    cfg = replace(TINY, human_light=True)
    net = NeroShading(cfg, 8, lut=SMALL_LUT)
    pts, normals, view, feat = _inputs(32)
    cams = -3.0 * view + pts  # the camera sits 3 units back along each ray
    with_h = net(pts, normals, view, feat, cam_origins=cams)
    without = net(pts, normals, view, feat)
    assert torch.isfinite(with_h["rgb"]).all() and with_h["rgb"].shape == (32, 3)
    assert not torch.allclose(with_h["specular"], without["specular"])  # the capturer adds light somewhere
    human, weight = net.lights.human(pts, with_h["reflected"], with_h["roughness"], cams)
    assert (weight >= 0).all() and (weight <= 1).all() and (human >= 0).all()


@pytest.mark.parametrize("bands", ["dense", "octave"])
def test_shading_gradcheck(bands):
    torch.manual_seed(0)
    cfg = replace(TINY, hidden=4, ide_degree=3, ide_bands=bands, light_exp_max=20.0)
    net = NeroShading(cfg, 2, lut=SMALL_LUT).double()
    # the occlusion MLP sees detached directions (NeRO), which finite differences do see: hold it at 0.5
    last = [m for m in net.lights.occlusion.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    pts, normals, view, feat = _inputs(3, 2, torch.float64, seed=3)
    normals.requires_grad_(True)
    feat.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda n, f: net(pts, n, view, f)["specular"], (normals, feat))


# ----------------------------------------------------------------------------- in the surface model
def test_surface_model_nero_outputs(monkeypatch):
    import lumisurf.shading.nero as nero_mod
    from lumisurf.config import merge
    from lumisurf.models.surface import RenderState, SurfaceModel

    monkeypatch.setattr(nero_mod, "load_lut", lambda: SMALL_LUT.numpy())
    cfg = merge(
        Config(),
        {
            "model": {
                "shading": "nero",
                "sdf": {"hidden": 32, "layers": 3, "feature_dim": 8},
                "nero": {"hidden": 16, "layers": 2, "occ_points": 8, "occ_steps": 16},
            },
            "sampler": {"n_samples": 16, "n_importance": 16, "up_sample_steps": 2},
        },
    )
    torch.manual_seed(0)
    model = SurfaceModel(cfg.model, cfg.sampler, "constant")
    assert isinstance(model.color, NeroShading)
    g = torch.Generator().manual_seed(0)
    d = _unit(torch.tensor([[0.0, 0.0, -3.0]]) + 0.15 * torch.randn(24, 3, generator=g))
    o = torch.tensor([[0.0, 0.0, 3.0]]).expand(24, 3)
    bg = torch.ones(24, 3)
    out = model(o, d, bg, RenderState(1.0, True, g))
    assert out["albedo"].shape == (24, 3) and out["metallic"].shape == (24, 1) and out["roughness"].shape == (24, 1)
    m = out["occ_pred"].shape[0]
    assert 0 < m <= 8 and out["occ_target"].shape == (m, 1)
    assert (out["occ_target"] >= 0).all() and (out["occ_target"] <= 1).all()
    assert out["occ_pred"].requires_grad and not out["occ_target"].requires_grad
    # a convex start shape (sphere) occludes none of its own reflections
    assert out["occ_target"].max() < 0.05
    with torch.no_grad():
        ev = model(o, d, bg, RenderState(1.0, False, None), need_grad_graph=False)
    assert "occ_pred" not in ev and ev["rgb"].shape == (24, 3) and (ev["rgb"] <= 1).all()


@pytest.mark.parametrize("preset", ["nero", "lumisurf-seg"])
def test_nero_model_renders_rays_that_miss_everything(preset):
    """Chunks whose rays all miss the unit sphere (or the occupancy grid) must render background."""
    from lumisurf.models.surface import RenderState, SurfaceModel
    from lumisurf.presets import preset_config

    cfg = preset_config(preset)
    cfg.model.sdf.grid.implementation = "torch"
    cfg.model.assignment.grid.implementation = "torch"
    model = SurfaceModel(cfg.model, cfg.sampler, "constant")
    o = torch.tensor([[0.0, 0.0, 5.0]]).expand(8, 3).contiguous()
    d = torch.tensor([[0.0, 1.0, 0.0]]).expand(8, 3).contiguous()  # parallel to the sphere, never enters it
    out = model(o, d, torch.ones(8, 3), RenderState(), need_grad_graph=False)
    assert torch.allclose(out["rgb"], torch.ones(8, 3)) and float(out["opacity"].abs().max()) == 0.0
    assert out["albedo"].shape == (8, 3)
