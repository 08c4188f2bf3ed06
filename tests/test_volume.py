"""Volume rendering maths (lumisurf.renderers.volume): shapes, hand values, NeuS formula, gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lumisurf.renderers import (
    accumulate,
    alpha_from_sdf_interval,
    composite_background,
    neus_alpha,
    render_depth,
    render_weights,
    transmittance,
)


def _neus_reference(sdf, cos, dists, inv_s, r):
    """Direct numpy transcription of NeuS' render_core opacity (float64)."""
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    iter_cos = -(relu(-cos * 0.5 + 0.5) * (1.0 - r) + relu(-cos) * r)
    nxt = sdf + iter_cos * dists * 0.5
    prv = sdf - iter_cos * dists * 0.5
    p, c = sig(prv * inv_s), sig(nxt * inv_s)
    return np.clip((p - c + 1e-5) / (p + 1e-5), 0.0, 1.0)


def test_shapes():
    n_rays, n_s = 5, 7
    sdf, cos, d = torch.randn(n_rays, n_s), -torch.rand(n_rays, n_s), torch.rand(n_rays, n_s)
    alpha = neus_alpha(sdf, cos, d, torch.tensor(10.0))
    assert alpha.shape == (n_rays, n_s)
    assert neus_alpha(sdf, cos, d, torch.full((n_rays, 1), 10.0)).shape == (n_rays, n_s)
    w = render_weights(alpha)
    assert transmittance(alpha).shape == w.shape == (n_rays, n_s)
    assert accumulate(w).shape == (n_rays, 1)
    assert accumulate(w, torch.rand(n_rays, n_s, 3)).shape == (n_rays, 3)
    assert render_depth(w, torch.rand(n_rays, n_s)).shape == (n_rays, 1)
    assert composite_background(torch.rand(n_rays, 3), accumulate(w), torch.ones(3)).shape == (n_rays, 3)
    assert alpha.dtype == torch.float32
    assert neus_alpha(sdf.double(), cos.double(), d.double(), torch.tensor(10.0).double()).dtype == torch.float64


@pytest.mark.parametrize(
    "alpha,weights,opacity,depth,rgb",
    [
        # T = [1, .5, .25]; w = [.5, .25, .125]; depth = .5*1 + .25*2 + .125*3; white background adds .125
        ([0.5, 0.5, 0.5], [0.5, 0.25, 0.125], 0.875, 1.375, [0.625, 0.375, 0.25]),
        # T = [1, .8, .4]; w = [.2, .4, .4]; opaque, background invisible
        ([0.2, 0.5, 1.0], [0.2, 0.4, 0.4], 1.0, 2.2, [0.2, 0.4, 0.4]),
    ],
)
def test_three_sample_compositing_by_hand(alpha, weights, opacity, depth, rgb):
    a = torch.tensor([alpha], dtype=torch.float64)
    w = render_weights(a)
    torch.testing.assert_close(w, torch.tensor([weights], dtype=torch.float64))
    op = accumulate(w)
    torch.testing.assert_close(op, torch.tensor([[opacity]], dtype=torch.float64))
    t_mid = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(render_depth(w, t_mid), torch.tensor([[depth]], dtype=torch.float64))
    colors = torch.eye(3, dtype=torch.float64)[None]  # samples red, green, blue: [1, 3, 3]
    out = composite_background(accumulate(w, colors), op, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([rgb], dtype=torch.float64))


def test_transmittance_is_exclusive():
    a = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    expected = torch.tensor([[1.0, 0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7]])
    torch.testing.assert_close(transmittance(a), expected)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_neus_alpha_matches_transcription(ratio):
    rng = np.random.default_rng(0)
    sdf = rng.normal(0, 0.1, (6, 9))
    cos = rng.uniform(-1, 1, (6, 9))
    dists = rng.uniform(0.001, 0.1, (6, 9))
    inv_s = rng.uniform(5, 200, (6, 1))
    ref = _neus_reference(sdf, cos, dists, inv_s, ratio)
    t = lambda x: torch.from_numpy(x)  # noqa: E731
    out = neus_alpha(t(sdf), t(cos), t(dists), t(inv_s), cos_anneal_ratio=ratio)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_neus_alpha_sanity():
    d = torch.full((1, 1), 0.1)
    cos = torch.full((1, 1), -1.0)
    big = torch.tensor(1e3)
    at_surface = neus_alpha(torch.zeros(1, 1), cos, d, big)
    assert at_surface.item() > 0.999
    far_outside = neus_alpha(torch.ones(1, 1), cos, d, big)
    assert far_outside.item() < 1e-4
    # leaving the surface (cos > 0) with exact cos: no opacity
    assert neus_alpha(torch.zeros(1, 1), -cos, d, big).item() < 1e-4
    # alpha grows with the interval length at the surface
    a_small = neus_alpha(torch.zeros(1, 1), cos, torch.full((1, 1), 0.001), torch.tensor(50.0))
    a_large = neus_alpha(torch.zeros(1, 1), cos, torch.full((1, 1), 0.01), torch.tensor(50.0))
    assert 0 < a_small.item() < a_large.item() < 1


def test_interval_alpha_consistent_with_neus_alpha():
    g = torch.Generator().manual_seed(1)
    sdf = torch.randn(4, 8, generator=g, dtype=torch.float64) * 0.1
    cos = -torch.rand(4, 8, generator=g, dtype=torch.float64)  # <= 0: iter_cos == cos at ratio 1
    d = torch.rand(4, 8, generator=g, dtype=torch.float64) * 0.1
    inv_s = 37.0
    a = neus_alpha(sdf, cos, d, torch.tensor(inv_s, dtype=torch.float64), cos_anneal_ratio=1.0)
    b = alpha_from_sdf_interval(sdf - cos * d * 0.5, sdf + cos * d * 0.5, inv_s)
    torch.testing.assert_close(a, b)
    assert ((b >= 0) & (b <= 1)).all()


def test_gradcheck_neus_alpha():
    g = torch.Generator().manual_seed(2)
    kw = dict(generator=g, dtype=torch.float64)
    sdf = (torch.randn(3, 4, **kw) * 0.05).requires_grad_()
    cos = (-0.1 - 0.8 * torch.rand(3, 4, **kw)).requires_grad_()  # away from relu kinks
    dists = 0.05 + 0.05 * torch.rand(3, 4, **kw)
    inv_s = (5.0 + 15.0 * torch.rand(3, 1, **kw)).requires_grad_()
    fn = lambda s, c, i: neus_alpha(s, c, dists, i, cos_anneal_ratio=0.5)  # noqa: E731
    out = fn(sdf, cos, inv_s)
    assert ((out > 0) & (out < 1)).all()  # not clipped: differentiable everywhere here
    assert torch.autograd.gradcheck(fn, (sdf, cos, inv_s))


def test_gradcheck_weights_and_accumulate():
    g = torch.Generator().manual_seed(3)
    kw = dict(generator=g, dtype=torch.float64)
    alpha = (0.1 + 0.8 * torch.rand(2, 5, **kw)).requires_grad_()
    assert torch.autograd.gradcheck(render_weights, (alpha,))
    w = torch.rand(2, 5, **kw).requires_grad_()
    vals = torch.rand(2, 5, 3, **kw).requires_grad_()
    assert torch.autograd.gradcheck(accumulate, (w, vals))
    assert torch.autograd.gradcheck(lambda x: accumulate(x), (w,))


def test_weights_sum_at_most_one():
    alpha = torch.rand(100, 32)
    op = accumulate(render_weights(alpha))
    assert (op <= 1 + 1e-6).all() and (op >= 0).all()
    # opacity equals 1 - final transmittance
    expected = 1 - torch.prod(1 - alpha, dim=-1, keepdim=True)
    torch.testing.assert_close(op, expected, rtol=1e-5, atol=1e-6)
    assert math.isclose(float(accumulate(render_weights(torch.ones(1, 3))).item()), 1.0)
