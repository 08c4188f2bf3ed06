"""NeRO Stage I lights (Liu et al. 2023): direct (outer) and indirect (inner) light MLPs, the occlusion
probability that blends them, and the optional light reflected from the person holding the camera.

All lights are linear HDR radiance, ``exp(min(x, exp_max))`` of an MLP output. Directions are unit
vectors in the normalised frame; ``roughness`` in [0, 1] widens the integrated directional encoding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.encodings.ide import IDEncoding
from lumisurf.encodings.ipe import integrated_positional_encoding
from lumisurf.fields.mlp import mlp

HUMAN_SCALE = 0.3  # NeRO: plane coordinates and ray lengths are scaled by this before the IPE
HUMAN_RANGE = 1.5  # scaled plane points farther than this from the camera get no human light
HUMAN_FREQS = 6


def make_mlp(d_in: int, d_out: int, cfg) -> nn.Sequential:
    """NeRO's MLPs: ``cfg.layers`` linear layers of width ``cfg.hidden`` (ReLU between); ``mlp[-1]`` is the output."""
    return mlp([d_in] + [cfg.hidden] * (cfg.layers - 1) + [d_out], cfg.weight_norm)


def set_output_bias(mlp: nn.Sequential, value: float) -> None:
    with torch.no_grad():
        mlp[-1].bias.fill_(value)


def exp_light(x: Tensor, exp_max: float) -> Tensor:
    """Positive light from an MLP output: ``exp(min(x, exp_max))``."""
    return torch.exp(x.clamp(max=exp_max))


def reflect(dirs: Tensor, normals: Tensor) -> Tensor:
    """Mirror ``dirs`` (travelling towards the surface, unit) about unit ``normals``: ``d - 2 (d.n) n``."""
    return dirs - 2.0 * (dirs * normals).sum(-1, keepdim=True) * normals


def human_frame(cam_origins: Tensor, up: Tensor, fixed_camera: bool) -> tuple[Tensor, Tensor]:
    """NeRO's capturer frame per point: rotation ``[N, 3, 3]`` (rows X, Y = -up, Z = horizontal forward)
    and centre ``[N, 3]`` (the camera, or its foot on the plane through the origin orthogonal to up).

    The forward direction is estimated as camera -> scene centre (object-centred captures).
    """
    centre = cam_origins if fixed_camera else cam_origins - (cam_origins @ up)[:, None] * up
    fwd = -cam_origins
    fwd = F.normalize(fwd - (fwd @ up)[:, None] * up, dim=-1)
    y_axis = (-up).expand_as(fwd)
    x_axis = torch.cross(y_axis, fwd, dim=-1)
    return torch.stack([x_axis, y_axis, fwd], dim=1), centre


class HumanLight(nn.Module):
    """Light from the capturer: the reflected ray meets the vertical plane through the camera; the hit
    point (a Gaussian that widens with roughness and distance) is IPE-encoded and mapped to rgb + weight."""

    def __init__(self, cfg):
        super().__init__()
        self.mlp = make_mlp(2 * 2 * HUMAN_FREQS, 4, cfg)
        set_output_bias(self.mlp, math.log(0.01))
        self.register_buffer(
            "up", F.normalize(torch.tensor(cfg.human_up, dtype=torch.float32), dim=0), persistent=False
        )
        self.fixed_camera = cfg.human_fixed_camera

    def forward(self, points: Tensor, refl: Tensor, roughness: Tensor, cam_origins: Tensor) -> tuple[Tensor, Tensor]:
        """points, refl, cam_origins [N, 3], roughness [N, 1] -> light [N, 3], weight [N, 1] in [0, 1]."""
        rot, centre = human_frame(cam_origins, self.up.to(points), self.fixed_camera)
        p = (rot @ (points - centre)[..., None])[..., 0]  # [N, 3] in the capturer frame
        r = (rot @ refl[..., None])[..., 0]
        rz = r[:, 2]
        valid = rz.abs() > 1e-4
        dist = -p[:, 2] / torch.where(valid, rz, torch.full_like(rz, 1e-4))  # [N]
        inter = p + dist[:, None] * r
        mean = inter[:, :2] * HUMAN_SCALE
        var = roughness * (dist[:, None] * HUMAN_SCALE) ** 2  # [N, 1]
        hits = (valid & (mean.norm(dim=-1) < HUMAN_RANGE) & (dist > 0)).to(points.dtype)[:, None]
        enc = integrated_positional_encoding(mean * hits, (var * hits).expand(-1, 2), HUMAN_FREQS)
        out = exp_light(self.mlp(enc), 0.0) * hits
        return out[:, :3], out[:, 3:].clamp(0.0, 1.0)


class NeroLights(nn.Module):
    """Outer (direct, depends on direction only), inner (indirect, position + direction) and occlusion."""

    def __init__(self, cfg):
        super().__init__()
        self.exp_max = cfg.light_exp_max
        self.ide = IDEncoding(cfg.ide_degree, cfg.ide_bands)
        self.pos_enc = FrequencyEncoding(3, cfg.pos_freqs)
        self.dir_enc = FrequencyEncoding(3, cfg.dir_freqs)
        d_ide, d_pos = self.ide.output_dim, self.pos_enc.output_dim
        self.outer = make_mlp(d_ide, 3, cfg)
        self.inner = make_mlp(d_pos + d_ide, 3, cfg)
        self.occlusion = make_mlp(d_pos + self.dir_enc.output_dim, 1, cfg)
        set_output_bias(self.outer, math.log(0.5))
        set_output_bias(self.inner, math.log(0.5))
        set_output_bias(self.occlusion, cfg.inner_init)
        self.human = HumanLight(cfg) if cfg.human_light else None

    def diffuse(self, normals: Tensor) -> Tensor:
        """Irradiance-like light [N, 3]: the outer light seen through the widest lobe (roughness 1)."""
        return exp_light(self.outer(self.ide(normals, torch.ones_like(normals[:, :1]))), self.exp_max)

    def specular(
        self, points: Tensor, refl: Tensor, roughness: Tensor, cam_origins: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Pre-filtered light along the reflected direction ``refl`` [N, 3] at ``points`` [N, 3].

        Returns light [N, 3] = inner * occ + outer' * (1 - occ) (outer' mixes in the human light), occ_raw
        [N, 1] (unclamped 0.5 * MLP + 0.5, what the occlusion loss sees), occ [N, 1] in [0, 1], direct,
        indirect [N, 3].
        """
        ide = self.ide(refl, roughness)
        pos = self.pos_enc(points)
        direct = exp_light(self.outer(ide), self.exp_max)
        indirect = exp_light(self.inner(torch.cat([pos, ide], -1)), self.exp_max)
        # NeRO: the occlusion MLP sees detached inputs, so only the occlusion loss and color shape it
        occ_raw = 0.5 * self.occlusion(torch.cat([pos.detach(), self.dir_enc(refl.detach())], -1)) + 0.5
        occ = occ_raw.clamp(0.0, 1.0)
        outer = direct
        if self.human is not None and cam_origins is not None:
            human, weight = self.human(points, refl, roughness, cam_origins)
            outer = human * weight + direct * (1.0 - weight)
        light = indirect * occ + outer * (1.0 - occ)
        return {"light": light, "occ_raw": occ_raw, "occ": occ, "direct": direct, "indirect": indirect}
