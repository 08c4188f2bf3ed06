"""Real spherical harmonics of unit directions: ``sh_basis`` (degree 1..5 -> 1, 4, 9, 16, 25 coefficients,
hand-written) and ``sh_bands`` (any list of bands l, e.g. Ref-NeRF's 1, 2, 4, 8, 16).

Convention: the orthonormal real SH basis Y_lm (Condon-Shortley phase folded in as in
instant-ngp / Ref-NeRF), ordered by degree l then m = -l..l. Directions are unit vectors [..., 3].
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
SH_C0 = _C0  # the band-0 basis value (a DC coefficient c gives color c * SH_C0)
_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
_C4 = (
    2.5033429417967046,
    -1.7701307697799304,
    0.9461746957575601,
    -0.6690465435572892,
    0.10578554691520431,
    -0.6690465435572892,
    0.47308734787878004,
    -1.7701307697799304,
    0.6258357354491761,
)


def sh_basis(d: Tensor, degree: int) -> Tensor:
    """Real SH basis of unit directions d [..., 3] up to ``degree`` (1..5 bands) -> [..., degree**2]."""
    if not 1 <= degree <= 5:
        raise ValueError(f"SH degree must be in 1..5, got {degree}")
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree > 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [_C2[0] * xy, _C2[1] * yz, _C2[2] * (2 * zz - xx - yy), _C2[3] * xz, _C2[4] * (xx - yy)]
    if degree > 3:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * xy * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    if degree > 4:
        out += [
            _C4[0] * xy * (xx - yy),
            _C4[1] * yz * (3 * xx - yy),
            _C4[2] * xy * (7 * zz - 1),
            _C4[3] * yz * (7 * zz - 3),
            _C4[4] * (zz * (35 * zz - 30) + 3),
            _C4[5] * xz * (7 * zz - 3),
            _C4[6] * (xx - yy) * (7 * zz - 1),
            _C4[7] * xz * (xx - 3 * yy),
            _C4[8] * (xx * (xx - 3 * yy) - yy * (3 * xx - yy)),
        ]
    return torch.stack(out, -1)


class SHEncoding(nn.Module):
    """Module wrapper: directions [..., 3] -> SH coefficients [..., degree**2] (``output_dim``)."""

    def __init__(self, degree: int = 4):
        super().__init__()
        self.degree = degree
        self.output_dim = degree * degree

    def forward(self, d: Tensor) -> Tensor:
        return sh_basis(d, self.degree)


def sh_orthonormality_error(degree: int, n: int = 200_000, seed: int = 0) -> float:
    """Monte-Carlo check used by the tests: max |E[Y_i Y_j] 4 pi - I|."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    y = sh_basis(d, degree)
    gram = (y.T @ y) * (4 * math.pi / n)
    return float((gram - torch.eye(degree * degree, dtype=torch.float64)).abs().max())


@lru_cache(maxsize=16)  # sh_bands runs every training step (the IDE): build the polynomials once per band set
def _legendre_columns(bands: tuple[int, ...]) -> tuple[np.ndarray, list[int], list[bool]]:
    """Polynomial coefficients in z of each output column's normalised associated Legendre part.

    Column (l, m) of ``sh_bands`` is poly_lm(z) * Re / Im (x + i y)^|m| (Im for m < 0): with
    (x + i y)^|m| = sin(theta)^|m| e^(i |m| phi) the sin^|m| factor of P_l^|m| is carried by the complex
    power, so poly_lm is a plain polynomial (sqrt 2 K_l|m| P_l^|m| / sin^|m|, Condon-Shortley phase).
    Returns coef [l_max + 1, n_columns] (float64, powers of z by row), |m| and Im flags per column.
    """
    l_max = max(bands)
    P = np.polynomial.polynomial
    norm: dict[tuple[int, int], np.ndarray] = {}
    pmm = np.array([1.0 / math.sqrt(4.0 * math.pi)])
    for m in range(l_max + 1):
        if m > 0:
            pmm = -math.sqrt((2 * m + 1) / (2 * m)) * pmm
        norm[(m, m)] = pmm
        if m < l_max:
            norm[(m + 1, m)] = math.sqrt(2 * m + 3) * P.polymulx(pmm)
        for l in range(m + 2, l_max + 1):
            a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
            b = math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
            norm[(l, m)] = a * P.polysub(P.polymulx(norm[(l - 1, m)]), b * norm[(l - 2, m)])
    cols, ms, ims = [], [], []
    for l in bands:
        for m in range(-l, l + 1):
            c = np.zeros(l_max + 1)
            poly = norm[(l, abs(m))] * (math.sqrt(2.0) if m else 1.0)
            c[: len(poly)] = poly
            cols.append(c)
            ms.append(abs(m))
            ims.append(m < 0)
    return np.stack(cols, 1), ms, ims


def sh_bands(d: Tensor, bands: tuple[int, ...]) -> Tensor:
    """Real SH of unit directions d [..., 3] for the bands ``bands`` (each l >= 0, m = -l..l per band, in the
    order given) -> [..., sum(2 l + 1)]; equal to ``sh_basis`` on bands 0..4. One matmul over powers of z."""
    if not bands or min(bands) < 0:
        raise ValueError(f"SH bands must be a non-empty list of l >= 0, got {bands}")
    coef, ms, ims = _legendre_columns(tuple(bands))
    l_max = coef.shape[0] - 1
    x, y, z = d.unbind(-1)
    z = z.double()  # the Legendre polynomials cancel: float32 powers of z lose 0.4 % at l = 16
    zp, re, im = [torch.ones_like(z)], [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(l_max):  # products, not pow: pow's backward is NaN at z = 0 for exponent 0
        zp.append(zp[-1] * z)
        re, im = re + [re[-1] * x - im[-1] * y], im + [re[-1] * y + im[-1] * x]
    legendre = (torch.stack(zp, -1) @ torch.as_tensor(coef, device=d.device)).to(d.dtype)  # [..., n_cols]
    idx = torch.as_tensor(ms, device=d.device)
    use_im = torch.as_tensor(ims, device=d.device)
    trig = torch.where(use_im, torch.stack(im, -1)[..., idx], torch.stack(re, -1)[..., idx])  # [..., n_cols]
    return legendre * trig
