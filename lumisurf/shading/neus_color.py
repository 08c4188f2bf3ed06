"""NeuS/IDR color network: rgb from position, SDF normal, view direction and SDF feature."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.encodings.spherical_harmonics import SHEncoding
from lumisurf.fields.mlp import mlp


class NeuSColor(nn.Module):
    """``rgb = sigmoid(MLP([x, n, enc(v), feature]))`` (IDR 'idr' mode); output sRGB in [0, 1].

    enc(v): frequency encoding (NeuS, ``multires_view``) or spherical harmonics (Instant-NSR, ``sh_degree``).
    With ``view_input="reflected"`` v is the ray direction mirrored about the unit normal,
    ``r = d - 2 (d.n) n``, and ``n.d`` is appended (Ref-NeRF's reparameterisation; gradients reach
    the normal through both).
    """

    def __init__(self, cfg, feature_dim: int):
        super().__init__()
        self.dir_enc = (
            SHEncoding(cfg.sh_degree) if cfg.view_encoding == "sh" else FrequencyEncoding(3, cfg.multires_view)
        )
        self.reflected = cfg.view_input == "reflected"
        d = 3 + 3 + self.dir_enc.output_dim + feature_dim + int(self.reflected)
        self.mlp = mlp([d] + [cfg.hidden] * (cfg.layers - 1) + [3], cfg.weight_norm)

    def forward(self, points: Tensor, normals: Tensor, view_dirs: Tensor, features: Tensor) -> Tensor:
        """points, normals, view_dirs (ray directions): [N, 3]; features [N, F] -> rgb [N, 3]."""
        if self.reflected:
            n = torch.nn.functional.normalize(normals, dim=-1)
            cos = (view_dirs * n).sum(-1, keepdim=True)  # [N, 1], < 0 when facing the camera
            refl = view_dirs - 2.0 * cos * n  # [N, 3] unit
            h = torch.cat([points, normals, self.dir_enc(refl), cos, features], dim=-1)
        else:
            h = torch.cat([points, normals, self.dir_enc(view_dirs), features], dim=-1)
        return torch.sigmoid(self.mlp(h))
