"""Ray samplers (lumisurf.samplers) and losses (lumisurf.losses): hand values, properties, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lumisurf.losses import PHOTOMETRIC, curvature_loss, eikonal_loss, mask_loss, psnr_from_mse, rgb_loss
from lumisurf.losses.geometry import normal_smoothness_loss, surface_point_pairs
from lumisurf.samplers import (
    background_samples,
    contract_inverted_sphere,
    interval_dists,
    merge_samples,
    near_far_sphere,
    neus_upsample,
    sample_pdf,
    stratified_samples,
)

# ---------------------------------------------------------------- samplers


def test_near_far_sphere_hand_cases():
    o = torch.tensor(
        [
            [0.0, 0.0, -3.0],  # through the centre
            [0.0, 2.0, -3.0],  # passes 2 from the centre: miss, closest at t = 3
            [0.0, 0.0, -3.0],  # looks away: sphere behind
            [0.0, 0.0, 0.0],
        ]
    )  # starts at the centre
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    near, far, hit = near_far_sphere(o, d, radius=1.0, min_near=0.05)
    assert near.shape == far.shape == (4, 1) and hit.shape == (4,) and hit.dtype == torch.bool
    torch.testing.assert_close(near.squeeze(-1), torch.tensor([2.0, 3.0, 0.05, 0.05]))
    torch.testing.assert_close(far.squeeze(-1), torch.tensor([4.0, 3.0, 0.05, 1.0]))
    assert hit.tolist() == [True, False, False, True]
    # other radius: ray through the centre from 3 hits |x| = 2 at 1 and 5
    n2, f2, _ = near_far_sphere(o[:1], d[:1], radius=2.0)
    assert (n2.item(), f2.item()) == pytest.approx((1.0, 5.0))


def test_stratified_samples():
    near, far = torch.tensor([[2.0], [0.0]]), torch.tensor([[4.0], [1.0]])
    t = stratified_samples(near, far, 4, perturb=False)
    torch.testing.assert_close(t[0], torch.tensor([2.25, 2.75, 3.25, 3.75]))
    g = torch.Generator().manual_seed(0)
    tp = stratified_samples(near, far, 16, perturb=True, generator=g)
    assert tp.shape == (2, 16)
    assert (tp >= near).all() and (tp <= far).all()
    assert (tp[:, 1:] >= tp[:, :-1]).all()
    tp2 = stratified_samples(near, far, 16, perturb=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(tp, tp2)  # reproducible with a generator
    assert not torch.equal(tp, stratified_samples(near, far, 16, perturb=False))


@pytest.mark.parametrize("deterministic", [True, False])
def test_sample_pdf_concentrates_on_weight(deterministic):
    n_rays, n_bins = 8, 10
    bins = torch.linspace(0.0, 1.0, n_bins + 1).expand(n_rays, -1) * 2.0 + 1.0  # edges in [1, 3]
    weights = torch.zeros(n_rays, n_bins)
    weights[:, 3] = 1.0  # delta-like pdf on [1.6, 1.8]
    s = sample_pdf(bins, weights, 64, deterministic, generator=torch.Generator().manual_seed(0))
    assert s.shape == (n_rays, 64)
    assert (s >= 1.0).all() and (s <= 3.0).all()
    assert (s[:, 1:] >= s[:, :-1]).all()
    in_bin = ((s >= 1.6 - 1e-6) & (s <= 1.8 + 1e-6)).float().mean()
    assert in_bin > 0.9


def test_sample_pdf_uniform_and_detached():
    bins = torch.linspace(0.0, 1.0, 5)[None].requires_grad_()
    w = torch.ones(1, 4, requires_grad=True)
    s = sample_pdf(bins, w, 4, deterministic=True)
    assert not s.requires_grad
    torch.testing.assert_close(s, torch.tensor([[0.125, 0.375, 0.625, 0.875]]))


def test_neus_upsample_finds_sphere_surface():
    g = torch.Generator().manual_seed(0)
    n, radius_obj = 32, 0.5
    targets = (torch.rand(n, 3, generator=g) - 0.5) * 0.6
    o = torch.tensor([0.0, 0.0, -3.0]).expand(n, 3)
    d = torch.nn.functional.normalize(targets - o, dim=-1)
    b = (o * d).sum(-1)
    t_hit = -b - torch.sqrt(b * b - ((o * o).sum(-1) - radius_obj**2))  # analytic first hit

    def sdf_fn(t):
        return (o[:, None] + d[:, None] * t[..., None]).norm(dim=-1) - radius_obj

    near, far, hit = near_far_sphere(o, d)
    assert hit.all()
    t = stratified_samples(near, far, 64, perturb=False)
    sdf = sdf_fn(t)
    for i in range(4):  # NeuS: 4 steps of 16 with inv_s = 64 * 2**i
        new = neus_upsample(o, d, t, sdf, 16, 64 * 2**i)
        assert new.shape == (n, 16) and not new.requires_grad
        close = ((new - t_hit[:, None]).abs() < 0.05).float().mean()
        assert close > (0.8 if i == 0 else 0.95)
        t, idx = merge_samples(t, new)
        sdf = torch.cat([sdf, sdf_fn(new)], dim=-1).gather(1, idx)
    assert (t[:, 1:] >= t[:, :-1]).all()


def test_merge_samples_permutation():
    g = torch.Generator().manual_seed(0)
    t_a = torch.sort(torch.rand(3, 5, generator=g)).values
    t_b = torch.sort(torch.rand(3, 4, generator=g)).values
    t, idx = merge_samples(t_a, t_b)
    assert t.shape == idx.shape == (3, 9)
    assert (t[:, 1:] >= t[:, :-1]).all()
    cat = torch.cat([t_a, t_b], -1)
    torch.testing.assert_close(cat.gather(1, idx), t)
    assert (torch.sort(idx, dim=-1).values == torch.arange(9)).all()  # a permutation per ray
    vals = torch.cat([t_a, t_b], -1)[..., None] * torch.tensor([1.0, 2.0])  # [3, 9, 2] values of t
    gathered = vals.gather(1, idx[..., None].expand(-1, -1, 2))
    torch.testing.assert_close(gathered[..., 1], 2 * t)


def test_interval_dists_by_hand():
    t = torch.tensor([[1.0, 2.0, 4.0]])
    dists, mid = interval_dists(t, torch.tensor([[5.0]]))
    torch.testing.assert_close(dists, torch.tensor([[1.0, 2.0, 1.0]]))
    torch.testing.assert_close(mid, torch.tensor([[1.5, 3.0, 4.5]]))
    dists, mid = interval_dists(t, torch.tensor([[5.0]]), last=0.5)
    torch.testing.assert_close(dists, torch.tensor([[1.0, 2.0, 0.5]]))
    torch.testing.assert_close(mid, torch.tensor([[1.5, 3.0, 4.25]]))


@pytest.mark.parametrize("perturb", [False, True])
def test_background_samples(perturb):
    far = torch.tensor([[1.5], [3.0]])
    t = background_samples(far, 32, perturb, generator=torch.Generator().manual_seed(0))
    assert t.shape == (2, 32)
    assert (t > far).all()
    assert (t[:, 1:] > t[:, :-1]).all()
    assert (t <= far * 1000.0 + 1e-3).all() and (t[:, -1:] > far * 100).all()
    if not perturb:  # uniform in disparity: equal steps of far / t
        steps = torch.diff(far / t, dim=-1)
        torch.testing.assert_close(steps, steps[:, :1].expand_as(steps))


def test_contract_inverted_sphere():
    p = torch.tensor([[0.0, 0.0, 2.0], [3.0, 4.0, 0.0]])
    out = contract_inverted_sphere(p)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 1.0, 0.5], [0.6, 0.8, 0.0, 0.2]]))
    assert contract_inverted_sphere(torch.rand(2, 5, 3) + 1).shape == (2, 5, 4)


# ---------------------------------------------------------------- losses


def test_photometric_registry_and_hand_values():
    assert PHOTOMETRIC.names() == ["charbonnier", "huber", "l1", "l2", "log_l1"]
    pred = torch.tensor([[0.05, 0.3, 0.0]])
    tgt = torch.zeros(1, 3)
    hub = PHOTOMETRIC.get("huber")(pred, tgt, delta=0.1, eps=1e-3)
    torch.testing.assert_close(hub, torch.tensor([[0.5 * 0.05**2, 0.1 * (0.3 - 0.05), 0.0]]))
    torch.testing.assert_close(hub, F.huber_loss(pred, tgt, reduction="none", delta=0.1))
    ch = PHOTOMETRIC.get("charbonnier")(pred, tgt, delta=0.1, eps=1e-3)
    torch.testing.assert_close(ch, torch.tensor([[math.sqrt(0.0025 + 1e-6), math.sqrt(0.09 + 1e-6), 1e-3]]))
    assert rgb_loss(pred, tgt, "l1").item() == pytest.approx(0.35 / 3)
    assert rgb_loss(pred, tgt, "l2").item() == pytest.approx((0.0025 + 0.09) / 3)
    assert rgb_loss(pred, tgt, "huber").item() == pytest.approx((0.00125 + 0.025) / 3)
    # log_l1: |log(p + 1/64) - log(t + 1/64)|; a negative prediction counts as black
    lg = PHOTOMETRIC.get("log_l1")(torch.tensor([[0.05, 0.3, -0.2]]), tgt)
    o = 1 / 64
    torch.testing.assert_close(lg, torch.tensor([[math.log((0.05 + o) / o), math.log((0.3 + o) / o), 0.0]]))
    with pytest.raises(KeyError):
        rgb_loss(pred, tgt, "l3")  # type: ignore[arg-type]


def test_rgb_loss_weighted():
    pred = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    tgt = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    assert rgb_loss(pred, tgt, "l1", weight=torch.tensor([1.0, 0.0])).item() == pytest.approx(0.5)
    assert rgb_loss(pred, tgt, "l1", weight=torch.tensor([[0.0], [1.0]])).item() == pytest.approx(1.0)
    assert rgb_loss(pred, tgt, "l1", weight=torch.ones(2)).item() == pytest.approx(rgb_loss(pred, tgt, "l1").item())
    assert rgb_loss(pred, tgt, "l2", weight=torch.zeros(2)).item() == 0.0


@pytest.mark.parametrize("kind", ["l1", "l2", "charbonnier", "huber"])
def test_gradcheck_rgb_loss(kind):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 3, generator=g, dtype=torch.float64).requires_grad_()
    tgt = torch.rand(4, 3, generator=g, dtype=torch.float64)
    d = (pred - tgt).abs()
    assert (d > 1e-3).all() and ((d - 0.1).abs() > 1e-3).all()  # away from kinks
    w = torch.rand(4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: rgb_loss(p, tgt, kind), (pred,))
    assert torch.autograd.gradcheck(lambda p: rgb_loss(p, tgt, kind, weight=w), (pred,))


def test_psnr():
    torch.testing.assert_close(psnr_from_mse(torch.tensor(0.01)), torch.tensor(20.0))
    assert torch.isfinite(psnr_from_mse(torch.tensor(0.0)))


def test_geometry_losses_by_hand():
    grads = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])  # |g| = 5 -> 16, |g| = 1 -> 0
    assert eikonal_loss(grads).item() == pytest.approx(8.0)
    assert eikonal_loss(grads, weight=torch.tensor([0.0, 1.0])).item() == pytest.approx(0.0)
    assert eikonal_loss(grads, weight=torch.tensor([[1.0], [0.0]])).item() == pytest.approx(16.0)
    assert eikonal_loss(grads[None].expand(3, 2, 3)).item() == pytest.approx(8.0)
    op = torch.tensor([[1.0], [0.5]])
    m = torch.tensor([1.0, 0.0])
    assert mask_loss(op, m).item() == pytest.approx((-math.log(1 - 1e-3) + math.log(2.0)) / 2, rel=1e-6)
    assert torch.isfinite(mask_loss(torch.tensor([[0.0]]), torch.tensor([[1.0]])))
    assert curvature_loss(torch.tensor([-1.0, 2.0, -3.0])).item() == pytest.approx(2.0)
    g64 = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    assert torch.autograd.gradcheck(eikonal_loss, (g64,))


def test_normal_smoothness_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 0.5], [0.0, 3.0, 0.0], [0.0, -1.0, 0.0]])  # 1 - cos: 0, 1, 2 (scale-free)
    assert normal_smoothness_loss(a, b).item() == pytest.approx(1.0)
    g = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: normal_smoothness_loss(x[0], x[1]), (g,))


def test_surface_point_pairs_at_depth_and_eps_apart():
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -3.0], [1.0, 0.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    depth = torch.tensor([[1.0], [0.1], [2.4]])  # weight-sums of t: the hit is at depth / opacity
    opacity = torch.tensor([[0.5001], [0.2], [0.8]])  # the second ray misses (opacity <= 0.5)
    pairs = surface_point_pairs(o, d, depth, opacity, 0.01, 8, torch.Generator().manual_seed(0))
    assert pairs.shape == (2, 2, 3)
    assert torch.allclose(pairs[0], torch.tensor([[0.0, 0.0, -3 + 1 / 0.5001], [1.0, 0.0, 0.0]]), atol=1e-5)
    assert torch.allclose((pairs[1] - pairs[0]).norm(dim=-1), torch.full((2,), 0.01))
    assert surface_point_pairs(o, d, depth, opacity, 0.01, 1).shape == (2, 1, 3)  # at most n points
    assert surface_point_pairs(o, d, depth, opacity * 0, 0.01, 8).shape == (2, 0, 3)  # no hit, no pair
