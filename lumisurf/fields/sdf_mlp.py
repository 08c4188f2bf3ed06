"""NeuS/IDR SDF MLP with geometric initialisation, skip connection and weight normalisation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.fields.base import SDF_BACKENDS, SDFField


def _weight_norm(layer: nn.Linear, enabled: bool) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(layer) if enabled else layer


@SDF_BACKENDS.register("mlp")
class MLPSDF(SDFField):
    """SDF MLP (Yariv et al. IDR; NeuS). Geometric init makes it start as a sphere of ``init_radius``.

    Layers: ``layers`` linear layers of width ``hidden`` (softplus beta), one skip at ``skip_in``,
    output ``1 + feature_dim`` (sdf first).
    """

    def __init__(self, cfg):
        super().__init__()
        self.encoding = FrequencyEncoding(3, cfg.multires)
        d_in = self.encoding.output_dim
        self.feature_dim = cfg.feature_dim
        dims = [d_in] + [cfg.hidden] * (cfg.layers - 1) + [1 + cfg.feature_dim]
        self.skip_in = tuple(cfg.skip_in)
        self.layers = nn.ModuleList()
        for i in range(len(dims) - 1):
            out_dim = dims[i + 1] - d_in if (i + 1) in self.skip_in else dims[i + 1]
            lin = nn.Linear(dims[i], out_dim)
            if cfg.geometric_init:
                geometric_init_(lin, i, len(dims) - 2, d_in, cfg)
            self.layers.append(_weight_norm(lin, cfg.weight_norm))
        self.act = nn.Softplus(beta=cfg.softplus_beta)
        self.d_in = d_in

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        inputs = self.encoding(points)  # [N, d_in]
        x = inputs
        for i, layer in enumerate(self.layers):
            if i in self.skip_in:
                x = torch.cat([x, inputs], dim=-1) / math.sqrt(2)
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x[:, 0], x[:, 1:]


def geometric_init_(lin: nn.Linear, i: int, last: int, d_in: int, cfg) -> None:
    """IDR geometric initialisation (Atzmon & Lipman SAL) so the SDF starts as a sphere."""
    out_dim, in_dim = lin.weight.shape
    sign = -1.0 if cfg.inside_out else 1.0
    with torch.no_grad():
        if i == last:
            nn.init.normal_(lin.weight, mean=sign * math.sqrt(math.pi) / math.sqrt(in_dim), std=1e-4)
            nn.init.constant_(lin.bias, -sign * cfg.init_radius)
        elif cfg.multires > 0 and i == 0:
            nn.init.constant_(lin.bias, 0.0)
            nn.init.constant_(lin.weight[:, 3:], 0.0)
            nn.init.normal_(lin.weight[:, :3], 0.0, math.sqrt(2) / math.sqrt(out_dim))
        elif cfg.multires > 0 and i in cfg.skip_in:
            nn.init.constant_(lin.bias, 0.0)
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2) / math.sqrt(out_dim))
            nn.init.constant_(lin.weight[:, -(d_in - 3) :], 0.0)
        else:
            nn.init.constant_(lin.bias, 0.0)
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2) / math.sqrt(out_dim))
