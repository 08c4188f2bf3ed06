"""NeuS variance: one learnable scalar, inv_s = exp(10 * variance) (the sharpness of the SDF->density map)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Variance(nn.Module):
    def __init__(self, init_val: float = 0.3, max_inv_s: float = 1e6):
        super().__init__()
        self.variance = nn.Parameter(torch.tensor(float(init_val)))
        self.max_inv_s = max_inv_s

    def inv_s(self) -> Tensor:  # [] scalar
        return torch.exp(self.variance * 10.0).clamp(1e-6, self.max_inv_s)
