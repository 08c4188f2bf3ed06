"""A smooth learnable environment: log radiance is one small MLP of the direction, read at the texels of a
lat-long map (``shading/envmap.py``'s convention: world +z up, linear RGB).

A per-texel map learned from Monte-Carlo gradients turns to salt-and-pepper noise and drifts (benchmarks/
results/materials.md): every texel moves on its own few samples. Here every texel shares the MLP's weights,
so a gradient at one direction moves its neighbourhood too, and the frequency encoding bounds how sharp the
light can get (NeRO and TensoSDF learn their Stage II light as an MLP with an exp output for the same reason).
``set_image`` distils the MLP onto a given map (Stage I's baked light), which becomes the start a tether
(``train/material_priors.env_priors``) can hold the light to.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.fields.mlp import mlp
from lumisurf.shading.envmap import downsample_envmap, latlong_directions, sample_latlong

LOG_MAX = 10.0  # exp(10) ~ 2.2e4: a bound on the radiance against overflow early in a fit
FIT_HEIGHT = 32  # set_image fits a 32 x 64 map: the MLP is smooth at that scale anyway, and it is 4x faster


class NeuralEnvironment(nn.Module):
    """forward(d) [N, 3] > 0: the bilinear look-up of ``image()``, an H x W map whose texel (i, j) holds
    ``exp(min(MLP(PE(d_ij)), LOG_MAX))`` (PE: ``n_freqs`` NeRF frequencies of the unit direction)."""

    def __init__(
        self, height: int = 32, width: int = 64, init: float = 0.5, hidden: int = 64, layers: int = 3, n_freqs: int = 4
    ):
        super().__init__()
        self.height, self.width = height, width
        self.encoding = FrequencyEncoding(3, n_freqs)
        self.mlp = mlp([self.encoding.output_dim] + [hidden] * (layers - 1) + [3])
        with torch.no_grad():  # a uniform start at ``init``
            self.mlp[-1].weight.zero_()
            self.mlp[-1].bias.fill_(math.log(init))
        dirs, _ = latlong_directions(height, width)
        self.register_buffer("dirs", dirs.reshape(-1, 3), persistent=False)  # [H*W, 3] texel centres

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def log_radiance_at(self, d: Tensor) -> Tensor:
        """Log radiance [N, 3] of the MLP in unit directions d [N, 3] (no texel look-up)."""
        return self.mlp(self.encoding(d)).clamp(max=LOG_MAX)

    def log_image(self) -> Tensor:
        """[H, W, 3] log radiance at the texel centres."""
        return self.log_radiance_at(self.dirs).reshape(self.height, self.width, 3)

    def image(self) -> Tensor:
        """[H, W, 3] radiance."""
        return torch.exp(self.log_image())

    def forward(self, d: Tensor) -> Tensor:
        """Radiance [N, 3] arriving from world directions d [N, 3]."""
        return sample_latlong(self.image(), d)

    @torch.enable_grad()
    def set_image(self, img: Tensor, min_value: float = 1e-6, steps: int = 400, lr: float = 1e-2) -> float:
        """Fit the MLP to img [h, w, 3] (linear radiance, any lat-long size; area-averaged to at most
        ``FIT_HEIGHT`` rows first) by L1 in log radiance weighted by solid angle (Adam, ``steps`` full-map steps,
        cosine learning rate); returns the final weighted mean |log error|."""
        if img.shape[0] > FIT_HEIGHT:
            img = downsample_envmap(img.detach().float(), FIT_HEIGHT, 2 * FIT_HEIGHT)
        h, w = img.shape[:2]
        dirs, omega = latlong_directions(h, w, device=self.dirs.device)
        target = torch.log(img.detach().to(self.dirs).clamp_min(min_value)).reshape(-1, 3)
        weight = (omega / omega.mean()).reshape(-1, 1)
        params = list(self.parameters())
        flags = [p.requires_grad for p in params]
        for p in params:  # a kept (frozen) light is still set: every weight moves during the fit only
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        err = torch.zeros(())
        for _ in range(steps):
            err = ((self.log_radiance_at(dirs.reshape(-1, 3)) - target).abs() * weight).mean()
            opt.zero_grad(set_to_none=True)
            err.backward()
            opt.step()
            sched.step()
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        return float(err.detach())
