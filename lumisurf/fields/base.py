"""The SDF field interface shared by every backend, and its spatial gradient."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from lumisurf.registry import Registry

SDF_BACKENDS: Registry = Registry("sdf backend")


class SDFField(nn.Module):
    """Interface: ``forward(points [N,3]) -> (sdf [N], feature [N, feature_dim])`` in the normalised frame."""

    feature_dim: int

    def sdf(self, points: Tensor) -> Tensor:  # [N]
        return self.forward(points)[0]

    def sdf_and_gradient(self, points: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        """SDF [N], feature [N, F] and spatial gradient dsdf/dx [N, 3] (autograd).

        ``create_graph=True`` keeps the graph so losses on the gradient (eikonal) train the field.
        """
        with torch.enable_grad():
            x = points if points.requires_grad else points.detach().requires_grad_(True)
            sdf, feat = self.forward(x)
            (grad,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=create_graph)
        return sdf, feat, grad

    def step_update(self, step: int) -> None:
        """Hook for per-step schedules (hash level activation, ...). Default: nothing."""


def build_sdf(cfg) -> SDFField:
    """Build the SDF backend named by ``cfg.backend`` (an :class:`lumisurf.config.SDFConfig`)."""
    import lumisurf.fields.sdf_mlp  # noqa: F401  (registers 'mlp')

    return SDF_BACKENDS.get(cfg.backend)(cfg)
