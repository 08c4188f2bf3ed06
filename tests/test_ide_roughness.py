"""Stage I lobe width (IDE) against Stage II GGX roughness, and the Stage II warm start's split of the two."""

import math

import numpy as np
import pytest
import torch

from lumisurf.encodings.ide import integrated_directional_encoding
from lumisurf.jobs.material_init import split_width, stage2_roughness, weighted_median
from lumisurf.shading.ide_roughness import ggx_first_band, ggx_from_ide, ide_width


def test_rough_ggx_blurs_like_a_cosine_lobe():
    # alpha = 1: D is the constant 1 / pi, so the reflected lobe has A1 = 2/3 exactly (as a cosine lobe)
    assert ggx_first_band(1.0) == pytest.approx(2.0 / 3.0, abs=1e-4)
    assert ide_width(1.0) == pytest.approx(math.log(1.5), abs=2e-4)


def test_a_mirror_has_no_width_and_widths_grow():
    widths = [ide_width(r) for r in np.linspace(0.0, 1.0, 21)]
    assert widths[0] < 1e-3
    assert all(b > a for a, b in zip(widths[4:], widths[5:]))  # strictly increasing once the lobe is resolved
    assert ide_width(0.3) == pytest.approx(0.0405, abs=2e-3)  # GGX 0.3 is a narrow vMF lobe


def test_inverse_round_trips():
    r = torch.linspace(0.15, 1.0, 18)
    rho = torch.tensor([ide_width(float(v)) for v in r])
    assert torch.allclose(ggx_from_ide(rho), r, atol=5e-3)
    assert float(ggx_from_ide(torch.tensor(5.0))) == 1.0  # wider than any GGX lobe
    assert float(ggx_from_ide(torch.tensor(0.0))) <= 0.05


def test_ide_band_one_matches_the_ggx_lobe():
    # the IDE scales band 1 by exp(-rho): at rho = ide_width(r) that is the GGX lobe's own A1
    d = torch.tensor([[0.0, 0.0, 1.0]])
    for r in (0.4, 0.7):
        rho = torch.tensor([[ide_width(r)]])
        ratio = integrated_directional_encoding(d, rho, 2)[0, 2] / integrated_directional_encoding(d, rho * 0, 2)[0, 2]
        assert float(ratio) == pytest.approx(ggx_first_band(r), rel=1e-5)


def test_weighted_median_by_hand():
    assert weighted_median(np.array([0.1, 0.2, 0.9]), np.array([1.0, 1.0, 1.0])) == pytest.approx(0.2)
    assert weighted_median(np.array([0.1, 0.2, 0.9]), np.array([0.0, 0.0, 5.0])) == pytest.approx(0.9)
    assert weighted_median(np.array([0.3, 0.1]), np.zeros(2)) == pytest.approx(0.2)


def test_split_width_follows_the_shiny_part():
    # a metal at width 0.1 beside a larger dielectric at 0.8: F0 weighting puts the light at the metal's width
    mats = {
        "metallic": np.array([1.0, 0.0, 0.0, 0.0]),
        "albedo": np.full((4, 3), 0.8),
        "roughness": np.array([0.1, 0.8, 0.8, 0.8]),
    }
    assert split_width(mats, "matched", bake=True) == pytest.approx(0.1)
    assert split_width(mats, "sharp", bake=True) == 0.0
    assert split_width(mats, "matched", bake=False) == 0.0


def test_stage2_roughness_gives_the_rest_of_the_width():
    rho = torch.tensor([[0.1], [0.1 + ide_width(0.5)]])
    out = stage2_roughness(rho, 0.1, "matched")
    assert float(out[0]) <= 0.05 and float(out[1]) == pytest.approx(0.5, abs=5e-3)
    assert torch.equal(stage2_roughness(rho, 0.0, "sharp"), rho)
