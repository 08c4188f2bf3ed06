"""Integrated directional encoding (Ref-NeRF, Verbin et al. 2022) on the real SH basis.

For a von Mises-Fisher lobe of concentration kappa = 1 / roughness around direction d, the expected
value of Y_lm is A_l(kappa) Y_lm(d) with A_l ~= exp(-l (l + 1) / (2 kappa)). So the IDE of (d, rho) is
the SH basis of d with band l scaled by exp(-l (l + 1) rho / 2): rho -> 0 gives plain SH, large rho
keeps only the constant band.

Bands (``ide_bands``): ``dense`` = l = 0 .. degree - 1 (degree <= 5: 25 values, what lumisurf used first);
``octave`` = l = 1, 2, 4, .., 2^(degree - 1) (Ref-NeRF / NeRO: degree 5 -> l up to 16, 67 values). Band 4
is still 0.99 of itself at width 0.001 and 0.67 at 0.04, so dense IDE cannot tell a mirror from GGX
roughness ~0.3; band 16 falls to 0.5 at width 0.005 (``shading/ide_roughness.py`` maps widths to GGX).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from lumisurf.encodings.spherical_harmonics import sh_bands, sh_basis

IdeBands = Literal["dense", "octave"]


def ide_band_list(degree: int, bands: IdeBands = "dense") -> tuple[int, ...]:
    """The SH bands l of an IDE: ``dense`` 0..degree-1, ``octave`` 1, 2, 4, .., 2^(degree-1)."""
    if bands == "octave":
        return tuple(2**i for i in range(degree))
    if bands == "dense":
        return tuple(range(degree))
    raise ValueError(f"IDE bands must be 'dense' or 'octave', got {bands!r}")


def band_of_coefficients(degree: int, bands: IdeBands = "dense") -> Tensor:
    """l of each SH coefficient in lumisurf's order (band-major, m = -l..l): [n_coefficients]."""
    return torch.cat([torch.full((2 * l + 1,), float(l)) for l in ide_band_list(degree, bands)])


def integrated_directional_encoding(d: Tensor, roughness: Tensor, degree: int = 5, bands: IdeBands = "dense") -> Tensor:
    """d [..., 3] unit directions, roughness [..., 1] (>= 0) -> [..., n_coefficients] attenuated SH."""
    l = band_of_coefficients(degree, bands).to(d)
    atten = torch.exp(-0.5 * l * (l + 1) * roughness)
    basis = sh_basis(d, degree) if bands == "dense" and degree <= 5 else sh_bands(d, ide_band_list(degree, bands))
    return basis * atten


class IDEncoding(nn.Module):
    def __init__(self, degree: int = 5, bands: IdeBands = "dense"):
        super().__init__()
        self.degree, self.bands = degree, bands
        self.output_dim = int(band_of_coefficients(degree, bands).numel())

    def forward(self, d: Tensor, roughness: Tensor) -> Tensor:
        return integrated_directional_encoding(d, roughness, self.degree, self.bands)
