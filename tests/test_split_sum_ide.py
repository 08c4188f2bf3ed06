"""Split-sum GGX table (against NeRO's reference) and the integrated directional encoding."""

import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from lumisurf.encodings.ide import IDEncoding, band_of_coefficients, ide_band_list, integrated_directional_encoding
from lumisurf.encodings.spherical_harmonics import sh_bands, sh_basis
from lumisurf.shading.split_sum import compute_lut, hammersley, integrate_brdf, sample_lut


def test_hammersley_points():
    p = hammersley(4)
    assert torch.allclose(p, torch.tensor([[0, 0], [0.25, 0.5], [0.5, 0.25], [0.75, 0.75]], dtype=p.dtype))


def test_smooth_mirror_limit_and_energy():
    # roughness -> 0, n.v = 1: every sample is the mirror direction, G = 1, F = F0 -> (scale, bias) = (1, 0)
    sb = integrate_brdf(torch.tensor([1.0]), torch.tensor([1e-3]), 256)[0]
    assert torch.allclose(sb, torch.tensor([1.0, 0.0], dtype=sb.dtype), atol=1e-3)
    # white furnace: F0 = 1 gives scale + bias <= 1 everywhere (energy is not created; measured max 1.0001)
    nv, r = torch.meshgrid(torch.linspace(0.05, 1, 8), torch.linspace(0.05, 1, 8), indexing="ij")
    sb = integrate_brdf(nv.reshape(-1), r.reshape(-1), 512)
    assert (sb.sum(-1) <= 1.0 + 2e-3).all() and (sb >= 0).all()  # Monte-Carlo estimate, 512 samples


def test_lut_matches_nero_reference():
    ref_path = SHARED_DATA / "reference" / "bsdf_256_256.bin"
    if not ref_path.exists():
        pytest.skip(f"{ref_path} is absent")
    ref = np.fromfile(ref_path, np.float32).reshape(256, 256, 2)
    ours = compute_lut(256, 1024)
    err = np.abs(ours - ref)
    # measured: mean 7.6e-4, 99th percentile 8.2e-3, max 1.3e-2 (grazing n.v, Monte-Carlo noise)
    assert err.mean() < 1.5e-3 and np.percentile(err, 99) < 1.2e-2 and err.max() < 2e-2, (err.mean(), err.max())


def test_sample_lut_bilinear_at_texel_centres():
    lut = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    # texel (row 1, col 2) centre: u = 2.5 / 3, v = 1.5 / 2
    assert torch.allclose(sample_lut(lut, torch.tensor(2.5 / 3), torch.tensor(0.75)), lut[1, 2])
    mid = sample_lut(lut, torch.tensor(1.0 / 3), torch.tensor(0.5))  # between cols 0/1 and rows 0/1
    assert torch.allclose(mid, (lut[0, 0] + lut[0, 1] + lut[1, 0] + lut[1, 1]) / 4)


def test_ide_limits_and_shapes():
    d = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    zero = integrated_directional_encoding(d, torch.zeros(10, 1), 5)
    assert zero.shape == (10, 25) and torch.allclose(zero, sh_basis(d, 5))
    rough = integrated_directional_encoding(d, torch.full((10, 1), 50.0), 5)
    assert torch.allclose(rough[:, 0], sh_basis(d, 1)[:, 0]) and rough[:, 1:].abs().max() < 1e-10
    l = band_of_coefficients(3)
    assert l.tolist() == [0, 1, 1, 1, 2, 2, 2, 2, 2]
    mid = integrated_directional_encoding(d, torch.full((10, 1), 0.1), 3)
    assert torch.allclose(mid[:, 4:], sh_basis(d, 3)[:, 4:] * math.exp(-0.3))


def test_ide_octave_bands_reach_band_16():
    """NeRO / Ref-NeRF bands 1, 2, 4, 8, 16: band 16 scaled exp(-136 rho); no constant band."""
    d = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64), dim=-1)
    assert band_of_coefficients(3, "octave").tolist() == [1.0] * 3 + [2.0] * 5 + [4.0] * 9
    enc = IDEncoding(5, "octave")
    assert enc.output_dim == 67
    sharp = enc(d, torch.zeros(6, 1, dtype=torch.float64))
    assert torch.allclose(sharp, sh_bands(d, (1, 2, 4, 8, 16)))
    rho = 0.005
    blurred = enc(d, torch.full((6, 1), rho, dtype=torch.float64))
    assert torch.allclose(blurred[:, -33:], sharp[:, -33:] * math.exp(-136 * rho))
    assert torch.allclose(blurred[:, :3], sharp[:, :3] * math.exp(-rho))
    with pytest.raises(ValueError):
        ide_band_list(3, "sparse")
