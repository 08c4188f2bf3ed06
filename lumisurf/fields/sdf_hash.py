"""Hash-grid SDF backends: ``hash`` (grid -> small decoder) and ``hybrid`` (MLP SDF + bounded hash residual).

Both support ``normals: analytic``: the grid kernel returns d features / d x and only the small decoder
is differentiated twice, so an eikonal loss needs neither a double backward through the grid nor six
extra evaluations.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.encodings.hash_grid import HashGrid
from lumisurf.errors import ConfigError
from lumisurf.fields.base import SDF_BACKENDS, SDFField
from lumisurf.fields.sdf_mlp import MLPSDF, geometric_init_


def _decoder(d_in: int, hidden: int, n_linear: int, d_out: int, cfg, geometric: bool) -> nn.ModuleList:
    """Linear stack ``d_in -> hidden x (n_linear - 1) -> d_out``; geometric init sees only the xyz inputs."""
    dims = [d_in] + [hidden] * (n_linear - 1) + [d_out]
    init_cfg = SimpleNamespace(multires=1, skip_in=(), inside_out=cfg.inside_out, init_radius=cfg.init_radius)
    layers = nn.ModuleList()
    for i in range(len(dims) - 1):
        lin = nn.Linear(dims[i], dims[i + 1])
        if geometric:
            geometric_init_(lin, i, len(dims) - 2, d_in, init_cfg)
        layers.append(lin)
    return layers


def _check_normals(cfg) -> None:
    if cfg.normals == "autograd" and cfg.grid.implementation != "torch":
        raise ConfigError(
            "model.sdf.normals=autograd needs a twice-differentiable grid: set "
            "model.sdf.grid.implementation=torch, or use normals=analytic|finite_difference"
        )


def _differentiable(enc: Tensor) -> Tensor:
    """Grid features without a graph (frozen table, or 0 active levels in the torch grid) become a leaf
    that requires grad, so d sdf / d features still exists for the analytic gradient."""
    return enc if enc.requires_grad else enc.detach().requires_grad_(True)


class CoarseExpert(nn.Module):
    """The cheap resolution expert: the first ``coarse_levels`` grid levels (and the position encoding) -> a small
    decoder -> SDF [N]. Distilled from the full field on the training samples (its inputs detached, so it never
    shapes the grid); ``gate_margin`` is the |SDF| above which its answer stands for the full field's."""

    def __init__(self, cfg, pe_dim: int, n_features: int):
        super().__init__()
        ex = cfg.experts
        if ex.coarse_levels < 1 or ex.coarse_levels >= cfg.grid.n_levels:
            raise ConfigError(
                f"model.sdf.experts.coarse_levels must be in [1, {cfg.grid.n_levels - 1}], got {ex.coarse_levels}"
            )
        self.levels, self.cols, self.margin = ex.coarse_levels, ex.coarse_levels * n_features, ex.margin
        self.layers = _decoder(pe_dim + self.cols, ex.hidden, 2, 1, cfg, cfg.geometric_init)
        self.act = nn.Softplus(beta=cfg.softplus_beta)
        self.register_buffer("error", torch.tensor(0.0))  # running mean |coarse - full| on training samples
        self.queries, self.coarse_only = 0, 0  # proposal queries, and those the cheap expert answered alone

    def forward(self, pe: Tensor, enc: Tensor) -> Tensor:
        h = self.act(self.layers[0](torch.cat([pe, enc[:, : self.cols]], -1)))
        return self.layers[1](h)[:, 0]

    def distill(self, pe: Tensor, enc: Tensor, sdf: Tensor) -> Tensor:
        """L1 to the full field's SDF at the same points (everything detached but the expert); updates the error."""
        err = (self(pe.detach(), enc.detach()) - sdf.detach()).abs()
        with torch.no_grad():
            self.error.lerp_(err.mean() if err.numel() else self.error, 0.05)
        return err.mean() if err.numel() else err.sum()

    def gate_margin(self) -> float:
        return self.margin + 3.0 * float(self.error)


@SDF_BACKENDS.register("hash")
class HashSDF(SDFField):
    """sdf, feature = decoder([x, PE(x), hashgrid(x)]) with softplus(beta) hidden activations."""

    def __init__(self, cfg):
        super().__init__()
        _check_normals(cfg)
        self.grid = HashGrid(cfg.grid)
        self.pe = FrequencyEncoding(3, cfg.multires)
        self.feature_dim = cfg.feature_dim
        d_in = self.pe.output_dim + self.grid.output_dim
        self.layers = _decoder(d_in, cfg.hidden, cfg.layers, 1 + cfg.feature_dim, cfg, cfg.geometric_init)
        self.act = nn.Softplus(beta=cfg.softplus_beta)
        self.expert = CoarseExpert(cfg, self.pe.output_dim, cfg.grid.n_features) if cfg.experts.enabled else None

    @torch.no_grad()
    def sdf_proposal(self, points: Tensor) -> Tensor:
        """With experts, in training: the cheap expert's SDF where its |SDF| clears its gate margin (far from the
        surface), the full field's elsewhere; otherwise the full field's."""
        if self.expert is None or not self.training:
            return self.sdf(points)
        coarse = self.expert(self.pe(points), self.grid(points, levels=self.expert.levels))
        near = (coarse.abs() < self.expert.gate_margin()).nonzero()[:, 0]
        if near.numel() > 0:
            coarse[near] = self.sdf(points[near])
        self.expert.queries += points.shape[0]
        self.expert.coarse_only += points.shape[0] - near.numel()
        return coarse

    def proposal_stats(self) -> dict[str, float]:
        """expert_coarse: the share of proposal queries so far that the cheap expert answered alone (each skipped
        the fine levels' gathers); expert_error: its running mean |error| on the training samples."""
        if self.expert is None:
            return {}
        return {
            "expert_coarse": self.expert.coarse_only / max(self.expert.queries, 1),
            "expert_error": float(self.expert.error),
        }

    def _decode(self, h: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        out = self._decode(torch.cat([self.pe(points), self.grid(points)], -1))
        return out[:, 0], out[:, 1:]

    def _analytic_gradient(self, points: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        """sdf [N], feature [N, F] and d sdf / d x [N, 3]: the decoder's input gradient written out as a
        backward pass of matrix products (softplus' = sigmoid(beta z)), so the eikonal loss needs only a
        first-order backward through it (no double backward of softplus); the grid's Jacobian does the rest."""
        with torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
            x = points.detach().requires_grad_(self.pe.n_freqs > 0)
            enc, jac = self.grid.forward_with_grad(points.detach())  # [N, LF], [N, LF, 3]
            pe = self.pe(x)  # [N, P]
            out, g_in = self._decode_with_input_grad(torch.cat([pe, enc], -1))
            g_pe, g_enc = g_in[:, : pe.shape[1]], g_in[:, pe.shape[1] :]
            if self.pe.n_freqs > 0:  # d PE / d x by autograd (elementwise, cheap)
                (g_x,) = torch.autograd.grad(pe, x, g_pe, create_graph=create_graph)
            else:  # PE is the identity
                g_x = g_pe
            grad = g_x + torch.einsum("nf,nfk->nk", g_enc, jac)
        if not create_graph:
            grad = grad.detach()
        elif self.expert is not None:
            self.last_expert_loss = self.expert.distill(pe, enc, out[:, 0])
        return out[:, 0], out[:, 1:], grad

    def _decode_with_input_grad(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Decoder output [N, 1 + F] and d output[:, 0] / d input [N, d_in], both differentiable."""
        beta = self.act.beta
        pre = []
        for layer in self.layers[:-1]:
            pre.append(layer(h))
            h = self.act(pre[-1])
        out = self.layers[-1](h)
        g = self.layers[-1].weight[0] * torch.sigmoid(beta * pre[-1])  # [N, hidden]
        for layer, z in zip(reversed(self.layers[1:-1]), reversed(pre[:-1])):
            g = (g @ layer.weight) * torch.sigmoid(beta * z)
        return out, g @ self.layers[0].weight

    def set_progress(self, step: int, active_levels: int | None = None, fd_eps: float | None = None) -> None:
        super().set_progress(step, active_levels, fd_eps)
        if active_levels is not None:
            self.grid.set_active_levels(active_levels)


@SDF_BACKENDS.register("hybrid")
class HybridSDF(SDFField):
    """sdf = mlp_sdf(x) + s * tanh(r(hashgrid(x))): the MLP holds low frequencies, the grid bounded detail.

    feature = [mlp feature, grid features] (dim ``feature_dim + L*F``).
    """

    def __init__(self, cfg):
        super().__init__()
        _check_normals(cfg)
        self.base = MLPSDF(cfg)
        self.grid = HashGrid(cfg.grid)
        self.residual = nn.Sequential(
            nn.Linear(self.grid.output_dim, 32), nn.Softplus(beta=cfg.softplus_beta), nn.Linear(32, 1)
        )
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)
        self.scale = cfg.hybrid_residual_scale
        self.feature_dim = cfg.feature_dim + self.grid.output_dim

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        sdf_b, feat_b = self.base(points)
        enc = self.grid(points)
        sdf = sdf_b + self.scale * torch.tanh(self.residual(enc)[:, 0])
        return sdf, torch.cat([feat_b, enc], -1)

    def _analytic_gradient(self, points: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        sdf_b, feat_b, g_b = self.base.autograd_gradient(points, create_graph)
        with torch.enable_grad():
            enc, jac = self.grid.forward_with_grad(points.detach())
            enc = _differentiable(enc)
            r = self.scale * torch.tanh(self.residual(enc)[:, 0])
            (g_enc,) = torch.autograd.grad(r, enc, torch.ones_like(r), create_graph=create_graph)
        grad = g_b + torch.einsum("nf,nfk->nk", g_enc, jac)
        return sdf_b + r, torch.cat([feat_b, enc], -1), grad

    def set_progress(self, step: int, active_levels: int | None = None, fd_eps: float | None = None) -> None:
        super().set_progress(step, active_levels, fd_eps)
        if active_levels is not None:
            self.grid.set_active_levels(active_levels)
