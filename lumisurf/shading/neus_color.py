"""NeuS/IDR colour network: rgb from position, SDF normal, view direction and SDF feature."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.encodings.spherical_harmonics import SHEncoding


class NeuSColor(nn.Module):
    """``rgb = sigmoid(MLP([x, n, enc(v), feature]))`` (IDR 'idr' mode); output sRGB in [0, 1].

    enc(v): frequency encoding (NeuS, ``multires_view``) or spherical harmonics (Instant-NSR, ``sh_degree``).
    """

    def __init__(self, cfg, feature_dim: int):
        super().__init__()
        self.dir_enc = (SHEncoding(cfg.sh_degree) if cfg.view_encoding == "sh"
                        else FrequencyEncoding(3, cfg.multires_view))
        d = 3 + 3 + self.dir_enc.output_dim + feature_dim
        mods = []
        for _ in range(cfg.layers - 1):
            lin = nn.Linear(d, cfg.hidden)
            mods += [nn.utils.parametrizations.weight_norm(lin) if cfg.weight_norm else lin, nn.ReLU(inplace=True)]
            d = cfg.hidden
        out = nn.Linear(d, 3)
        mods.append(nn.utils.parametrizations.weight_norm(out) if cfg.weight_norm else out)
        self.mlp = nn.Sequential(*mods)

    def forward(self, points: Tensor, normals: Tensor, view_dirs: Tensor, features: Tensor) -> Tensor:
        """points, normals, view_dirs (ray directions): [N, 3]; features [N, F] -> rgb [N, 3]."""
        h = torch.cat([points, normals, self.dir_enc(view_dirs), features], dim=-1)
        return torch.sigmoid(self.mlp(h))
