"""NeRF++ background: a NeRF over the inverted sphere for rays leaving the unit sphere."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.fields.mlp import mlp


class BackgroundNeRF(nn.Module):
    """Density + color of points outside the unit sphere, parametrised as (x/|x|, 1/|x|) [.., 4]."""

    def __init__(self, cfg):
        super().__init__()
        self.pos_enc = FrequencyEncoding(4, cfg.multires)
        self.dir_enc = FrequencyEncoding(3, cfg.multires_view)
        w = cfg.hidden
        self.trunk = mlp([self.pos_enc.output_dim] + [w] * cfg.layers, relu_last=True)
        self.density = nn.Linear(w, 1)
        self.feature = nn.Linear(w, w)
        self.rgb = mlp([w + self.dir_enc.output_dim, w // 2, 3])

    def forward(self, x4: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """x4 [N, 4] contracted points, dirs [N, 3] unit view directions -> density [N] (>=0), rgb [N, 3] in [0,1]."""
        h = self.trunk(self.pos_enc(x4))
        sigma = torch.relu(self.density(h))[:, 0]
        rgb = torch.sigmoid(self.rgb(torch.cat([self.feature(h), self.dir_enc(dirs)], -1)))
        return sigma, rgb
