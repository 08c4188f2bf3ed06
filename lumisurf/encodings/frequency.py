"""NeRF frequency (positional) encoding."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FrequencyEncoding(nn.Module):
    """``x -> [x, sin(2^k x), cos(2^k x)]`` for k < n_freqs (NeRF/NeuS style, no pi factor).

    Input [..., d]; output [..., d * (1 + 2 * n_freqs)] (``include_input``) and ``output_dim`` says so.
    """

    def __init__(self, in_dim: int, n_freqs: int, include_input: bool = True):
        super().__init__()
        self.in_dim, self.n_freqs, self.include_input = in_dim, n_freqs, include_input
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)
        self.output_dim = in_dim * (int(include_input) + 2 * n_freqs)

    def forward(self, x: Tensor) -> Tensor:
        if self.n_freqs == 0:
            return x
        xf = x[..., None, :] * self.freqs.to(x.dtype)[:, None]  # [..., n_freqs, d]
        enc = torch.cat([torch.sin(xf), torch.cos(xf)], dim=-1).flatten(-2)  # [..., n_freqs * 2d]
        # reorder to NeuS/NeRF order [sin f0, cos f0, sin f1, ...] per frequency: already grouped by frequency
        return torch.cat([x, enc], dim=-1) if self.include_input else enc
