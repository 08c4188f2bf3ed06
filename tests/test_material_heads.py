"""Material heads: parameter ranges, hand-computed radiance, energy bound, mixture of heads."""

from __future__ import annotations

import math

import pytest
import torch

from lumisurf.losses.segmentation import energy_conservation_loss
from lumisurf.shading.heads import (
    HEADS,
    LambertHead,
    ShadingContext,
    SpecularHead,
    SubsurfaceHead,
    TransmissionHead,
    build_heads,
    mix_heads,
    mixture_reflectance,
    refract,
)

F_DIM = 5


def _ctx(n=64, seed=0, dtype=torch.float32, feature_scale=1.0, normal_incidence=False, **kw) -> ShadingContext:
    g = torch.Generator().manual_seed(seed)
    normals = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1)
    if normal_incidence:
        view = -normals
    else:  # keep n.v > 0: flip directions that look away from the surface
        view = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1)
        view = torch.where(((normals * view).sum(-1, keepdim=True) > 0), -view, view)
    return ShadingContext(
        points=torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1,
        normals=normals,
        view_dirs=view,
        features=torch.randn(n, F_DIM, generator=g, dtype=dtype) * feature_scale,
        diffuse_light=torch.rand(n, 3, generator=g, dtype=dtype) * 2,
        specular_light=kw.pop("specular_light", torch.rand(n, 3, generator=g, dtype=dtype) * 3),
        lut=kw.pop("lut", torch.stack([torch.full((n,), 0.6, dtype=dtype), torch.full((n,), 0.3, dtype=dtype)], -1)),
        **kw,
    )


def _set_params(head, logits):
    """Make the head output constant pre-sigmoid ``logits`` (zero last-layer weights)."""
    with torch.no_grad():
        head.mlp[-1].weight.zero_()
        head.mlp[-1].bias.copy_(torch.tensor(logits, dtype=head.mlp[-1].bias.dtype))


def _logit(p):
    return math.log(p / (1 - p))


RANGES = {
    "albedo": (0, 1),
    "metallic": (0, 1),
    "roughness": (0, 1),
    "tint": (0, 1),
    "ior": (1, 2),
    "scatter": (0, 1),
    "wrap": (0, 1),
    "fresnel": (0, 1),
}


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_head_ranges_and_finite(name, scale):
    torch.manual_seed(0)
    head = HEADS[name](F_DIM, hidden=16, layers=2)
    ctx = _ctx(feature_scale=scale)
    out = head(ctx)
    assert out["rgb"].shape == (64, 3) and out["reflectance"].shape == (64,)
    assert torch.isfinite(out["rgb"]).all() and (out["rgb"] >= 0).all()
    checked = 0
    for key, (lo, hi) in RANGES.items():
        if key in out:
            assert out[key].min() >= lo and out[key].max() <= hi, key
            checked += 1
    assert checked >= 1
    # gradients reach the MLP
    out["rgb"].sum().backward()
    assert head.mlp[0].weight.grad is not None and torch.isfinite(head.mlp[0].weight.grad).all()


def test_lambert_hand_value():
    head = LambertHead(F_DIM, hidden=8)
    _set_params(head, [0.0, _logit(0.25), _logit(0.75)])
    ctx = _ctx(n=4)
    out = head(ctx)
    expect = torch.tensor([0.5, 0.25, 0.75]) * ctx.diffuse_light
    assert torch.allclose(out["rgb"], expect, atol=1e-6)
    assert torch.allclose(out["reflectance"], torch.full((4,), 0.75), atol=1e-6)


def test_specular_hand_value():
    head = SpecularHead(F_DIM, hidden=8)
    a, m, r = 0.8, 0.25, 0.4
    _set_params(head, [_logit(a)] * 3 + [_logit(m), _logit(r)])
    ctx = _ctx(n=3)
    out = head(ctx)
    f0 = 0.04 * (1 - m) + a * m  # 0.23
    expect = a * (1 - m) * ctx.diffuse_light + ctx.specular_light * (f0 * 0.6 + 0.3)
    assert torch.allclose(out["rgb"], expect, atol=1e-5)
    assert torch.allclose(out["roughness"], torch.full((3, 1), r), atol=1e-6)
    assert torch.allclose(out["reflectance"], torch.full((3,), a * (1 - m) + f0 * 0.6 + 0.3), atol=1e-5)


def test_specular_light_callable_and_own_lut():
    """specular_light may depend on roughness; without ctx.lut the head samples its table."""
    table = torch.stack([torch.full((4, 4), 0.5), torch.full((4, 4), 0.1)], -1)  # constant scale/bias
    head = SpecularHead(F_DIM, hidden=8, lut_table=table)
    _set_params(head, [0.0, 0.0, 0.0, _logit(1 - 1e-6), _logit(0.3)])  # metallic ~ 1, albedo .5
    ctx = _ctx(n=5, lut=None, specular_light=lambda rough: rough.expand(-1, 3) * 10.0)
    out = head(ctx)
    expect = (0.3 * 10.0) * (0.5 * 0.5 + 0.1)
    assert torch.allclose(out["rgb"], torch.full((5, 3), expect), atol=1e-4)
    with pytest.raises(ValueError):
        SpecularHead(F_DIM)(_ctx(n=2, lut=None))


def test_transmission_normal_incidence():
    head = TransmissionHead(F_DIM, hidden=8)
    _set_params(head, [0.0, 0.0, 0.0, 0.0])  # tint 0.5, ior 1.5 -> F0 = 0.04
    ctx = _ctx(n=6, normal_incidence=True)
    out = head(ctx)
    assert torch.allclose(out["ior"], torch.full((6, 1), 1.5))
    assert torch.allclose(out["fresnel"], torch.full((6, 1), 0.04), atol=1e-6)
    expect = 0.04 * ctx.specular_light + 0.96 * 0.5 * ctx.diffuse_light
    assert torch.allclose(out["rgb"], expect, atol=1e-5)
    assert torch.allclose(out["refracted_dir"], ctx.view_dirs, atol=1e-5)  # no bending head-on
    # an environment callable replaces the diffuse approximation
    ctx.env_fn = lambda d: torch.ones_like(d) * 2.0
    assert torch.allclose(head(ctx)["rgb"], 0.04 * ctx.specular_light + 0.96 * 0.5 * 2.0, atol=1e-5)


def test_refract_snell():
    theta = 0.6
    d = torch.tensor([[math.sin(theta), 0.0, -math.cos(theta)]], dtype=torch.float64)
    n = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    t = refract(d, n, torch.tensor([[1 / 1.5]], dtype=torch.float64))
    assert torch.allclose(t.norm(dim=-1), torch.ones(1, dtype=torch.float64))
    assert math.isclose(float(t[0, 0]), math.sin(theta) / 1.5, rel_tol=1e-9)  # sin_t = sin_i / eta
    assert float(t[0, 2]) < 0  # continues into the surface


def test_subsurface_hand_value():
    head = SubsurfaceHead(F_DIM, hidden=8)
    _set_params(head, [_logit(0.8)] * 3 + [_logit(0.5)] * 3 + [_logit(0.25)])
    back = torch.full((4, 3), 1.0)
    ctx = _ctx(n=4, back_light=back)
    out = head(ctx)
    e = ctx.diffuse_light
    expect = 0.8 * (0.75 * e + 0.25 * 0.5 * 0.5 * (e + back))
    assert torch.allclose(out["rgb"], expect, atol=1e-5)
    assert torch.allclose(out["reflectance"], torch.full((4,), 0.8 * (0.75 + 0.25 * 0.5)), atol=1e-6)


@pytest.mark.parametrize("name", ["lambert", "transmission", "subsurface"])
def test_energy_bounded_by_construction(name):
    torch.manual_seed(1)
    head = HEADS[name](F_DIM, hidden=16)
    for scale in (1.0, 1e3):
        refl = head(_ctx(feature_scale=scale))["reflectance"]
        assert (refl <= 1.0 + 1e-6).all()
        assert float(energy_conservation_loss(refl.detach())) == 0.0


def test_specular_energy():
    ctx = _ctx(n=8)
    head = SpecularHead(F_DIM, hidden=8)
    _set_params(head, [20.0] * 3 + [-20.0, 0.0])  # albedo 1, dielectric: 1 + 0.04*0.6 + 0.3 > 1
    refl = head(ctx)["reflectance"]
    assert torch.allclose(refl, torch.full((8,), 1.0 + 0.04 * 0.6 + 0.3), atol=1e-5)
    assert float(energy_conservation_loss(refl.detach())) == pytest.approx((0.04 * 0.6 + 0.3) ** 2, rel=1e-4)
    comp = SpecularHead(F_DIM, hidden=8, energy_compensated=True)
    _set_params(comp, [20.0] * 3 + [-20.0, 0.0])
    assert (comp(ctx)["reflectance"] <= 1.0 + 1e-6).all()
    _set_params(head, [20.0] * 3 + [20.0, 0.0])  # metal, albedo 1: F0 = 1 -> 0.6 + 0.3 <= 1
    assert (head(ctx)["reflectance"] <= 1.0).all()


def test_mixture_one_hot_and_convex():
    torch.manual_seed(2)
    heads = build_heads(["lambert", "specular", "subsurface"], F_DIM, hidden=8)
    ctx = _ctx(n=10)
    outs = [h(ctx) for h in heads]
    rgbs = torch.stack([o["rgb"] for o in outs])  # [K, N, 3]
    for k in range(3):
        one_hot = torch.nn.functional.one_hot(torch.full((10,), k), 3).float()
        assert torch.allclose(mix_heads(rgbs, one_hot), rgbs[k])
        assert torch.allclose(mixture_reflectance(outs, one_hot), outs[k]["reflectance"])
    probs = torch.softmax(torch.randn(10, 3), -1)
    mixed = mix_heads(rgbs, probs)
    assert (mixed <= rgbs.amax(0) + 1e-6).all() and (mixed >= rgbs.amin(0) - 1e-6).all()
    assert torch.allclose(mixed[0], (rgbs[:, 0] * probs[0][:, None]).sum(0))
    with pytest.raises(KeyError):
        build_heads(["plastic"], F_DIM)


def test_mix_heads_gradcheck():
    rgbs = torch.rand(2, 4, 3, dtype=torch.float64, requires_grad=True)
    probs = torch.softmax(torch.randn(4, 2, dtype=torch.float64), -1).requires_grad_(True)
    assert torch.autograd.gradcheck(mix_heads, (rgbs, probs))


def test_head_gradcheck_float64():
    torch.manual_seed(3)
    head = SpecularHead(F_DIM, hidden=4, layers=1).double()
    ctx = _ctx(n=3, dtype=torch.float64)
    feats = ctx.features.clone().requires_grad_(True)

    def f(x):
        ctx.features = x
        return head(ctx)["rgb"]

    assert torch.autograd.gradcheck(f, (feats,))
