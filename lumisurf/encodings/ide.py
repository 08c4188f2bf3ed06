"""Integrated directional encoding (Ref-NeRF, Verbin et al. 2022) on the real SH basis.

For a von Mises-Fisher lobe of concentration kappa = 1 / roughness around direction d, the expected
value of Y_lm is A_l(kappa) Y_lm(d) with A_l ~= exp(-l (l + 1) / (2 kappa)). So the IDE of (d, rho) is
the SH basis of d with band l scaled by exp(-l (l + 1) rho / 2): rho -> 0 gives plain SH, large rho
keeps only the constant band. Bands l = 0 .. degree - 1 (degree <= 5 here).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lumisurf.encodings.spherical_harmonics import sh_basis


def band_of_coefficients(degree: int) -> Tensor:
    """l of each SH coefficient in lumisurf's order (l-major, m = -l..l): [degree**2]."""
    return torch.cat([torch.full((2 * l + 1,), float(l)) for l in range(degree)])


def integrated_directional_encoding(d: Tensor, roughness: Tensor, degree: int = 5) -> Tensor:
    """d [..., 3] unit directions, roughness [..., 1] (>= 0) -> [..., degree**2] attenuated SH."""
    l = band_of_coefficients(degree).to(d)
    atten = torch.exp(-0.5 * l * (l + 1) * roughness)
    return sh_basis(d, degree) * atten


class IDEncoding(nn.Module):
    def __init__(self, degree: int = 5):
        super().__init__()
        self.degree = degree
        self.output_dim = degree * degree

    def forward(self, d: Tensor, roughness: Tensor) -> Tensor:
        return integrated_directional_encoding(d, roughness, self.degree)
