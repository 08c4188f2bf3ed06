"""Integrated positional encoding (mip-NeRF, Barron et al. 2021).

For x ~ N(mean, var) per coordinate, E[sin(f x)] = exp(-f^2 var / 2) sin(f mean) (and likewise for cos),
so a Gaussian is encoded by the expected sin/cos of its frequency-scaled coordinates: variance -> 0 gives
the plain frequency encoding, a large variance fades a frequency out to 0. Frequencies are 2^k (no pi
factor, as :class:`lumisurf.encodings.frequency.FrequencyEncoding`) and the output order is the same as
that encoding without its input: per frequency [sin (d values), cos (d values)].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def integrated_positional_encoding(mean: Tensor, var: Tensor, n_freqs: int, min_deg: int = 0) -> Tensor:
    """mean [..., d], var [..., 1] or [..., d] (>= 0, squared units of mean) -> [..., d * 2 * n_freqs].

    Frequencies 2^k for k in [min_deg, min_deg + n_freqs).
    """
    freqs = 2.0 ** torch.arange(min_deg, min_deg + n_freqs, dtype=mean.dtype, device=mean.device)  # [L]
    var = torch.broadcast_to(var, mean.shape)
    scaled_mean = mean[..., None, :] * freqs[:, None]  # [..., L, d]
    damp = torch.exp(-0.5 * var[..., None, :] * (freqs * freqs)[:, None])  # [..., L, d]
    enc = torch.cat([damp * torch.sin(scaled_mean), damp * torch.cos(scaled_mean)], dim=-1)  # [..., L, 2d]
    return enc.flatten(-2)


class IPEncoding(nn.Module):
    """Module wrapper: ``forward(mean [..., in_dim], var) -> [..., output_dim]``."""

    def __init__(self, in_dim: int, n_freqs: int, min_deg: int = 0):
        super().__init__()
        self.in_dim, self.n_freqs, self.min_deg = in_dim, n_freqs, min_deg
        self.output_dim = in_dim * 2 * n_freqs

    def forward(self, mean: Tensor, var: Tensor) -> Tensor:
        return integrated_positional_encoding(mean, var, self.n_freqs, self.min_deg)
