"""Stage II material field and indirect light (normalised frame; the object lies inside the unit sphere).

``MaterialField``: position -> albedo (linear base color in [0, 1]), metallic in [0, 1], roughness in
[roughness_min, 1] (GGX alpha = roughness^2). ``IndirectLight``: position + direction -> radiance seen
along an occluded direction (light bounced off the object itself), positive, HDR.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.encodings.hash_grid import HashGrid
from lumisurf.encodings.spherical_harmonics import SHEncoding
from lumisurf.fields.mlp import mlp


class MaterialField(nn.Module):
    """x [N, 3] -> {"albedo" [N, 3], "metallic" [N, 1], "roughness" [N, 1]}."""

    def __init__(self, cfg):
        super().__init__()
        self.grid = HashGrid(cfg.grid)
        self.roughness_min = cfg.roughness_min
        self.mlp = mlp([self.grid.output_dim + 3, cfg.hidden, cfg.hidden, 5])

    def init_constant(self, albedo: Tensor, metallic: float, roughness: float) -> None:
        """Start from a uniform material (last-layer bias); albedo [3] in (0, 1)."""
        r = (roughness - self.roughness_min) / (1.0 - self.roughness_min)
        target = torch.cat([albedo.reshape(3), torch.tensor([metallic, r])]).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.mlp[-1].bias.copy_(torch.logit(target).to(self.mlp[-1].bias))
            self.mlp[-1].weight.mul_(0.1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.mlp(torch.cat([self.grid(x), x], -1))
        s = torch.sigmoid(h)
        return {
            "albedo": s[:, :3],
            "metallic": s[:, 3:4],
            "roughness": self.roughness_min + (1.0 - self.roughness_min) * s[:, 4:5],
        }


class IndirectLight(nn.Module):
    """Radiance [N, 3] arriving at x [N, 3] from direction l [N, 3] (unit) when l is blocked by the object."""

    def __init__(self, hidden: int = 64, init: float = 0.1):
        super().__init__()
        self.pos = FrequencyEncoding(3, 4)
        self.dir = SHEncoding(4)
        self.mlp = mlp([self.pos.output_dim + self.dir.output_dim, hidden, hidden, 3])
        with torch.no_grad():
            self.mlp[-1].bias.fill_(float(torch.log(torch.expm1(torch.tensor(init)))))

    def forward(self, x: Tensor, l: Tensor) -> Tensor:
        return nn.functional.softplus(self.mlp(torch.cat([self.pos(x), self.dir(l)], -1)))
