"""The SDF field interface shared by every backend, and its spatial gradient (three modes)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lumisurf.registry import Registry

SDF_BACKENDS: Registry = Registry("sdf backend")


class SDFField(nn.Module):
    """Interface: ``forward(points [N,3]) -> (sdf [N], feature [N, feature_dim])`` in the normalised frame.

    ``normals_mode`` picks how :meth:`sdf_and_gradient` differentiates: ``autograd`` (double backward
    when trained through), ``finite_difference`` (central, step ``fd_eps`` in world units, set by a
    schedule) or ``analytic`` (backends override :meth:`_analytic_gradient`; default = autograd).
    """

    feature_dim: int
    normals_mode: str = "autograd"
    fd_eps: float = 5e-3
    last_laplacian: Tensor | None = None  # set by finite differences: [N] of the last call
    last_expert_loss: Tensor | None = None  # set by gated experts in training: the cheap expert's distillation

    def sdf(self, points: Tensor) -> Tensor:  # [N]
        return self.forward(points)[0]

    def sdf_proposal(self, points: Tensor) -> Tensor:
        """The SDF [N] where only its rough value matters (the up-sampler's coarse samples): the field's own here;
        a backend with a cheaper expert may answer far from the surface with it."""
        return self.sdf(points)

    def proposal_stats(self) -> dict[str, float]:
        """Scalars for the training log about :meth:`sdf_proposal` (none here)."""
        return {}

    def hash_grid(self):
        """The backend's multi-resolution grid (its level schedule, the grid TV loss), or None."""
        return getattr(self, "grid", None)

    def sdf_and_gradient(self, points: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        """SDF [N], feature [N, F] and spatial gradient dsdf/dx [N, 3].

        ``create_graph=True`` keeps the graph so losses on the gradient (eikonal) train the field;
        with False the outputs carry no graph (rendering, extraction).
        """
        if self.normals_mode == "finite_difference":
            if create_graph:
                return self._fd_gradient(points)
            with torch.no_grad():
                return self._fd_gradient(points)
        fn = self._analytic_gradient if self.normals_mode == "analytic" else self.autograd_gradient
        sdf, feat, grad = fn(points, create_graph)
        if not create_graph:
            sdf, feat, grad = sdf.detach(), feat.detach(), grad.detach()
        return sdf, feat, grad

    def autograd_gradient(self, points: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        with torch.enable_grad():
            x = points.detach().requires_grad_(True)
            sdf, feat = self.forward(x)
            (grad,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=create_graph)
        return sdf, feat, grad

    def _analytic_gradient(self, points: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        return self.autograd_gradient(points, create_graph)

    def _fd_gradient(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Central differences with step ``fd_eps``: 6 extra SDF evaluations in one batch."""
        n = points.shape[0]
        sdf, feat = self.forward(points)
        offsets = torch.eye(3, dtype=points.dtype, device=points.device) * self.fd_eps  # [3, 3]
        shifted = torch.cat([points[:, None] + offsets, points[:, None] - offsets], 1)  # [N, 6, 3]
        s = self.sdf(shifted.reshape(-1, 3)).reshape(n, 6)
        grad = (s[:, :3] - s[:, 3:]) / (2 * self.fd_eps)
        # the same six values give the Laplacian (Neuralangelo's curvature loss) for free
        self.last_laplacian = (s.sum(-1) - 6.0 * sdf) / (self.fd_eps**2)
        return sdf, feat, grad

    def set_progress(self, step: int, active_levels: int | None = None, fd_eps: float | None = None) -> None:
        """Schedules push their values here (hash level activation, finite-difference step)."""
        if fd_eps is not None:
            self.fd_eps = fd_eps


def build_sdf(cfg) -> SDFField:
    """Build the SDF backend named by ``cfg.backend`` (an :class:`lumisurf.config.SDFConfig`)."""
    field = SDF_BACKENDS.get(cfg.backend)(cfg)
    field.normals_mode = cfg.normals
    return field
