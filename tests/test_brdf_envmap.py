"""Radiance HDR I/O, lat-long environment maps (+ importance sampling), the GGX BRDF and its samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from lumisurf.data.hdr import read_hdr, write_hdr
from lumisurf.errors import DataError
from lumisurf.shading import brdf
from lumisurf.shading.envmap import (
    EnvImportanceSampler,
    EnvironmentMap,
    dir_to_uv,
    downsample_envmap,
    latlong_directions,
    sample_latlong,
    uv_to_dir,
)
from lumisurf.shading.split_sum import integrate_brdf

F64 = torch.float64


def _t(*x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


def _sphere_grid(nz: int = 800, nphi: int = 400) -> tuple[torch.Tensor, float]:
    """Equal-area midpoint grid on the unit sphere: directions [nz*nphi, 3] and the cell solid angle."""
    z = -1 + (torch.arange(nz, dtype=F64) + 0.5) * 2 / nz
    phi = (torch.arange(nphi, dtype=F64) + 0.5) * 2 * math.pi / nphi
    zz, pp = torch.meshgrid(z, phi, indexing="ij")
    s = torch.sqrt(1 - zz**2)
    return torch.stack([s * torch.cos(pp), s * torch.sin(pp), zz], -1).reshape(-1, 3), 4 * math.pi / (nz * nphi)


# ---------------------------------------------------------------------------------------- HDR I/O
@pytest.mark.parametrize("width", [37, 5])  # new-style RLE and flat scanlines
def test_hdr_round_trip(tmp_path, width):
    rng = np.random.default_rng(0)
    img = np.exp(rng.normal(0, 3, size=(6, width, 3))).astype(np.float32)
    img[1] = 0.0  # runs of zeros
    img[2, :] = [1.5, 0.25, 7.0]  # runs of equal bytes
    write_hdr(tmp_path / "a.hdr", img)
    back = read_hdr(tmp_path / "a.hdr")
    assert back.shape == img.shape and back.dtype == np.float32
    rel = np.abs(back - img).max(-1) / np.maximum(img.max(-1), 1e-30)
    assert rel[img.max(-1) > 0].max() < 0.01 and (back[1] == 0).all()
    write_hdr(tmp_path / "b.hdr", back)  # decoded values re-encode bit-exactly
    assert (tmp_path / "a.hdr").read_bytes() == (tmp_path / "b.hdr").read_bytes()


def test_hdr_hand_built_flat_file_and_orientation(tmp_path):
    # +Y: the first stored scanline is the bottom row
    pixels = bytes([128, 64, 0, 129, 0, 0, 0, 0, 255, 255, 255, 128, 128, 128, 128, 136])
    (tmp_path / "h.hdr").write_bytes(b"#?RADIANCE\nEXPOSURE=1\nFORMAT=32-bit_rle_rgbe\n\n+Y 2 +X 2\n" + pixels)
    img = read_hdr(tmp_path / "h.hdr")
    assert img.shape == (2, 2, 3)
    np.testing.assert_allclose(img[1, 0], [128.5 / 128, 64.5 / 128, 0.5 / 128])
    np.testing.assert_allclose(img[1, 1], 0.0)
    np.testing.assert_allclose(img[0, 0], 255.5 / 256)
    np.testing.assert_allclose(img[0, 1], 128.5)


def test_hdr_bad_files(tmp_path):
    img = np.ones((4, 16, 3), np.float32)
    write_hdr(tmp_path / "ok.hdr", img)
    data = (tmp_path / "ok.hdr").read_bytes()
    cases = {
        "trunc.hdr": data[:-5],
        "magic.hdr": b"P6\n" + data,
        "res.hdr": data.replace(b"-Y 4 +X 16", b"-Y 4 Q 16"),
        "header.hdr": data[:20],
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DataError, match=name):
            read_hdr(tmp_path / name)
    with pytest.raises(DataError):
        read_hdr(tmp_path / "missing.hdr")


def test_hdr_reads_shared_envmaps():
    files = sorted((SHARED_DATA / "envmaps").glob("*.hdr"))
    if not files:
        pytest.skip(f"no env maps in {SHARED_DATA / 'envmaps'}")
    for f in files:
        img = read_hdr(f)
        assert img.shape == (512, 1024, 3) and img.dtype == np.float32
        assert np.isfinite(img).all() and img.min() >= 0 and 0.05 < img.mean() < 50
        # lit from above: the upper half is brighter than the lower half
        assert img[:256].mean() > img[256:].mean()


# ---------------------------------------------------------------------------------------- env maps
def test_uv_convention_hand_values():
    d = _t([0, 0, 1], [0, 1, 0], [1, 0, 0], [0, -1, 0], [-1, 0, 0], [0, 0, -1])
    uv = dir_to_uv(d)
    torch.testing.assert_close(uv[1:5], _t([0, 0.5], [0.25, 0.5], [0.5, 0.5], [0.75, 0.5]))
    assert uv[0, 1] == 0 and uv[5, 1] == 1
    g = torch.Generator().manual_seed(0)
    r = torch.randn(100, 3, generator=g, dtype=F64)
    r = r / r.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(uv_to_dir(dir_to_uv(r)), r)


def test_latlong_directions_and_lookup():
    dirs, omega = latlong_directions(8, 16, dtype=F64)
    assert dirs.shape == (8, 16, 3) and omega.shape == (8, 16)
    torch.testing.assert_close(omega.sum(), torch.tensor(4 * math.pi, dtype=F64))
    torch.testing.assert_close(dir_to_uv(dirs)[3, 5], _t(5.5 / 16, 3.5 / 8))
    img = torch.rand(8, 16, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sample_latlong(img, dirs.reshape(-1, 3)), img.reshape(-1, 3))  # texel centres
    # u = 0 lies halfway between the last and the first column (wrap); the poles clamp to the edge rows
    d = uv_to_dir(_t(0.0, 3.5 / 8))[None]
    torch.testing.assert_close(sample_latlong(img, d)[0], 0.5 * (img[3, 0] + img[3, 15]))
    pole = sample_latlong(img, _t([0.0, 0.0, 1.0])[None])[0]
    assert pole.min() >= img[0].min(0).values.min() - 1e-12 and pole.max() <= img[0].max() + 1e-12
    q = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    small = torch.rand(3, 4, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda im: sample_latlong(im, q), (small,))


def test_environment_map_module():
    env = EnvironmentMap(4, 8, init=0.5)
    d = torch.randn(10, 3)
    torch.testing.assert_close(env(d), torch.full((10, 3), 0.5))
    img = torch.rand(4, 8, 3) + 0.1
    env2 = EnvironmentMap.from_image(img)
    torch.testing.assert_close(env2.image(), img)
    out = env2(d)
    assert (out > 0).all() and out.shape == (10, 3)
    out.sum().backward()
    assert env2.log_radiance.grad is not None and env2.log_radiance.grad.abs().sum() > 0


def _test_map() -> torch.Tensor:
    """A real env map (down-sampled to 32 x 64) when present, else a sky with a bright sun."""
    f = SHARED_DATA / "envmaps" / "studio_small_03_1k.hdr"
    if f.exists():
        return downsample_envmap(torch.from_numpy(read_hdr(f)), 32, 64).to(F64)
    dirs, _ = latlong_directions(32, 64, dtype=F64)
    sun = torch.exp(20 * ((dirs * _t(0.3, 0.4, 0.866)).sum(-1) - 1))
    return (0.2 + dirs[..., 2:].clamp_min(0) + 50 * sun[..., None]) * _t(1.0, 0.9, 0.7)


def test_env_importance_sampling_integrates_the_map():
    img = _test_map()
    dirs, omega = latlong_directions(*img.shape[:2], dtype=F64)
    sampler = EnvImportanceSampler(img)
    exact = (img * omega[..., None]).sum((0, 1))  # [3] texel sum
    assert (sampler.density * omega).sum().item() == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    d, pdf = sampler.sample(50000, g)
    assert d.shape == (50000, 3) and pdf.shape == (50000,) and (pdf > 0).all()
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(50000, dtype=F64))
    torch.testing.assert_close(sampler.pdf(d), pdf)
    # nearest-texel radiance over the pdf: the luminance estimate has (nearly) zero variance
    uv = dir_to_uv(d)
    texel = img[(uv[:, 1] * img.shape[0]).long().clamp(max=img.shape[0] - 1), (uv[:, 0] * img.shape[1]).long()]
    torch.testing.assert_close((texel / pdf[:, None]).mean(0), exact, rtol=0.02, atol=0)
    # bilinear radiance: an ordinary MC estimate
    torch.testing.assert_close((sample_latlong(img, d) / pdf[:, None]).mean(0), exact, rtol=0.03, atol=0)
    # the pdf integrates to 1 (stratified uniform directions: an equal-area grid)
    grid, dw = _sphere_grid(800, 640)  # columns aligned with the 64 texel columns
    assert (sampler.pdf(grid) * dw).sum().item() == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("size", [(8, 16), (5, 7)])
def test_downsample_envmap_keeps_the_integral(size):
    img = torch.rand(16, 32, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    small = downsample_envmap(img, *size)
    assert small.shape == (*size, 3)
    _, om_big = latlong_directions(16, 32, dtype=F64)
    _, om_small = latlong_directions(*size, dtype=F64)
    tol = 1e-12 if size == (8, 16) else 2e-2  # exact for integer factors
    torch.testing.assert_close(
        (small * om_small[..., None]).sum((0, 1)), (img * om_big[..., None]).sum((0, 1)), rtol=tol, atol=0
    )
    np.testing.assert_allclose(downsample_envmap(np.full((16, 32, 3), 2.0), *size), 2.0)


# ---------------------------------------------------------------------------------------- BRDF
def test_f0_and_hand_computed_normal_incidence():
    albedo = _t(1.0, 0.5, 0.25)
    torch.testing.assert_close(brdf.f0_from(albedo, _t(0.0)), torch.full((3,), 0.04, dtype=F64))
    torch.testing.assert_close(brdf.f0_from(albedo, _t(1.0)), albedo)
    z = _t(0.0, 0.0, 1.0)
    # alpha = 1: D = 1/pi, G = 1, F = F0 -> f cos = F0 / (4 pi)
    metal = brdf.eval_brdf_cos(z, z, z, albedo, _t(1.0), _t(1.0))
    torch.testing.assert_close(metal, albedo / (4 * math.pi))
    plastic = brdf.eval_brdf_cos(z, z, z, albedo, _t(0.0), _t(1.0))
    torch.testing.assert_close(plastic, albedo / math.pi + 0.04 / (4 * math.pi))


def test_brdf_zero_below_horizon_reciprocity_and_gradcheck():
    g = torch.Generator().manual_seed(4)
    n = torch.nn.functional.normalize(torch.randn(6, 3, dtype=F64, generator=g), dim=-1)
    v = torch.nn.functional.normalize(n + 0.7 * torch.randn(6, 3, dtype=F64, generator=g), dim=-1)
    l = torch.nn.functional.normalize(n + 0.7 * torch.randn(6, 3, dtype=F64, generator=g), dim=-1)
    alb, met, rough = (
        torch.rand(6, 3, dtype=F64, generator=g),
        torch.rand(6, 1, dtype=F64, generator=g),
        0.2 + 0.8 * torch.rand(6, 1, dtype=F64, generator=g),
    )
    f_vl = brdf.eval_brdf_cos(n, v, l, alb, met, rough)
    f_lv = brdf.eval_brdf_cos(n, l, v, alb, met, rough)
    nl, nv = (n * l).sum(-1, keepdim=True), (n * v).sum(-1, keepdim=True)
    ok = ((nl > 0) & (nv > 0)).squeeze(-1)
    assert ok.sum() >= 3
    torch.testing.assert_close(f_vl[ok] / nl[ok], f_lv[ok] / nv[ok])
    assert (f_vl[~ok] == 0).all() and (brdf.eval_brdf_cos(n, v, -n, alb, met, rough) == 0).all()
    args = tuple(x[ok].clone().requires_grad_() for x in (alb, met, rough))
    assert torch.autograd.gradcheck(lambda a, m, r: brdf.eval_brdf_cos(n[ok], v[ok], l[ok], a, m, r), args)


@pytest.mark.parametrize("rough", [0.1, 0.3, 0.6, 1.0])
def test_white_furnace(rough):
    z, g = _t(0.0, 0.0, 1.0), torch.Generator().manual_seed(5)
    one, r = torch.ones(3, dtype=F64), _t(rough)
    for nv in (0.2, 0.6, 0.99):
        v = _t(math.sqrt(1 - nv * nv), 0.0, nv)
        xi = torch.rand(20000, 2, dtype=F64, generator=g)
        l = brdf.sample_ggx_reflection(z, v, r, xi)
        spec = (brdf.eval_brdf_cos(z, v, l, one, _t(1.0), r)[:, 0] / brdf.pdf_ggx_reflection(z, v, l, r)).mean()
        ref = integrate_brdf(_t(nv), _t(rough), 2048).sum()  # split-sum scale + bias with F0 = 1
        assert spec <= 1.0 and spec.item() == pytest.approx(ref.item(), abs=0.01)
        lc = brdf.sample_cosine(z, xi)
        lam = brdf.eval_brdf_cos(z, v, lc, one, _t(0.0), r) - brdf.eval_brdf_cos(z, v, lc, 0 * one, _t(0.0), r)
        lam = (lam[:, 0] / brdf.pdf_cosine(z, lc)).mean()
        assert lam.item() == pytest.approx(1.0, abs=1e-9)  # Lambert, albedo 1, is exactly energy preserving


def test_pdfs_integrate_to_one_and_moments_match():
    dirs, dw = _sphere_grid()
    n = torch.nn.functional.normalize(_t(0.2, -0.3, 0.9), dim=0)
    t = torch.nn.functional.normalize(torch.linalg.cross(n, _t(1.0, 0.0, 0.0)), dim=0)
    assert (brdf.pdf_cosine(n, dirs) * dw).sum().item() == pytest.approx(1.0, abs=1e-4)
    for rough in (0.3, 0.6, 1.0):
        for nv in (0.3, 0.9):
            v = nv * n + math.sqrt(1 - nv * nv) * t
            p = brdf.pdf_ggx_reflection(n, v, dirs, _t(rough))
            assert (p * dw).sum().item() == pytest.approx(1.0, abs=2e-3)  # over the sphere
            assert (p * dw)[(dirs * n).sum(-1) > 0].sum() <= 1.0  # samples below the horizon carry f = 0
    # moments: sample means against the quadrature of l * pdf
    g = torch.Generator().manual_seed(6)
    xi = torch.rand(100000, 2, dtype=F64, generator=g)
    v, r = 0.5 * n + math.sqrt(0.75) * t, _t(0.5)
    p = brdf.pdf_ggx_reflection(n, v, dirs, r)
    for samples, dens in (
        (brdf.sample_ggx_reflection(n, v, r, xi), p),
        (brdf.sample_cosine(n, xi), brdf.pdf_cosine(n, dirs)),
    ):
        expect = (dirs * (dens * dw)[:, None]).sum(0)
        torch.testing.assert_close(samples.mean(0), expect, atol=6e-3, rtol=0)
        torch.testing.assert_close(samples.norm(dim=-1), torch.ones(len(xi), dtype=F64))
    assert ((brdf.sample_cosine(-n, xi) * n).sum(-1) <= 1e-12).all()


def test_mis_balance():
    a, b = _t(0.0, 1.0, 3.0, 0.0), _t(0.0, 1.0, 1.0, 2.0)
    w = brdf.mis_weight_balance(a, b)
    torch.testing.assert_close(w, _t(0.0, 0.5, 0.75, 0.0))
    torch.testing.assert_close((w + brdf.mis_weight_balance(b, a))[1:], torch.ones(3, dtype=F64))


def test_ggx_d_is_finite_where_rounding_puts_n_dot_h_above_one():
    # at roughness 0.02 alpha^2 is ~ float32 epsilon: n.h = 1 + 2^-23 made the denominator exactly 0 (inf * 0
    # light was a NaN relit pixel); D peaks at 1 / (pi alpha^2) and never above
    from lumisurf.shading.brdf import ggx_d

    for r in (0.02, 0.025, 0.03):
        alpha = torch.tensor(r * r)
        c = torch.tensor([1.0, 1.0 + 2**-23, 1.0 + 2**-22, 1.0 + 3 * 2**-23])
        d = ggx_d(c, alpha)
        assert torch.isfinite(d).all()
        torch.testing.assert_close(d, torch.full_like(d, 1.0 / (math.pi * float(alpha) ** 2)))
