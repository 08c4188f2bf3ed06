"""The autograd shell the fast hash-grid kernels share (Warp, numba): level-major buffers in, point-major out.

A kernel backend gives a :class:`KernelRunner`; :class:`LevelMajorEncode` allocates the level-major outputs
(``feat`` [k, N, F], ``jac`` [k, N, F, 3]: a level's rows are one contiguous stretch for the thread or launch that
owns it), turns them point-major (``[N, L*F]``, ``[N, L*F, 3]``, zero for the inactive levels) and, in the
backward, hands the runner level-major upstream gradients and a zeroed table gradient to add into.
Conventions: `hash_grid_torch`.
"""

from __future__ import annotations

from typing import Protocol

import torch

from lumisurf.encodings.hash_grid_torch import GridLayout, to_level_major, to_point_major


class KernelRunner(Protocol):
    def forward(
        self,
        x: torch.Tensor,
        table: torch.Tensor,
        layout: GridLayout,
        bound: float,
        want_jac: bool,
        feat: torch.Tensor,
        jac: torch.Tensor,
    ) -> None:
        """Fill feat [k, N, F] and (want_jac) jac [k, N, F, 3] for the first k = feat.shape[0] levels."""

    def backward(
        self,
        x: torch.Tensor,
        table: torch.Tensor,
        layout: GridLayout,
        bound: float,
        g_feat: torch.Tensor,
        g_jac: torch.Tensor,
        has_gjac: bool,
        g_table: torch.Tensor | None,
        need_x: bool,
    ) -> torch.Tensor | None:
        """Add d loss / d table into g_table (when given) from g_feat [k, N, F] and (has_gjac) g_jac [k, N, F, 3];
        return d loss / d x [N, 3] when need_x (else None)."""


class LevelMajorEncode(torch.autograd.Function):
    """x [N,3], table [R,F] -> feat [N,L*F] (+ jac [N,L*F,3] when want_jac) with ``runner``; first-order backward."""

    @staticmethod
    def forward(ctx, x, table, layout: GridLayout, bound: float, k: int, want_jac: bool, runner: KernelRunner):
        n_pts, n_feat = x.shape[0], table.shape[1]
        x, table = x.detach().contiguous(), table.detach().contiguous()
        feat = table.new_empty(k, n_pts, n_feat)
        jac = table.new_empty(k, n_pts, n_feat, 3) if want_jac else table.new_zeros(1, 1, 1, 3)
        if n_pts > 0 and k > 0:
            runner.forward(x, table, layout, float(bound), want_jac, feat, jac)
        ctx.save_for_backward(x, table)
        ctx.meta = (layout, float(bound), k, want_jac, runner)
        feat = to_point_major(feat, layout.n_levels)
        return (feat, to_point_major(jac, layout.n_levels)) if want_jac else feat

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_feat, g_jac=None):
        x, table = ctx.saved_tensors
        layout, bound, k, want_jac, runner = ctx.meta
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n_pts, n_feat = x.shape[0], table.shape[1]
        g_table = torch.zeros_like(table) if need_table else None
        g_x = torch.zeros_like(x) if need_x else None
        if n_pts == 0 or k == 0 or not (need_x or need_table):  # nothing to launch: zero gradients
            return g_x, g_table, None, None, None, None, None
        if g_feat is None:
            g_feat = table.new_zeros(n_pts, layout.n_levels * n_feat)
        has_gjac = bool(want_jac and g_jac is not None)
        g_feat = to_level_major(g_feat, k, n_feat)
        g_jac = to_level_major(g_jac, k, n_feat) if has_gjac else table.new_zeros(1, 1, 1, 3)
        gx = runner.backward(x, table, layout, bound, g_feat, g_jac, has_gjac, g_table, need_x)
        return (gx if need_x else None), g_table, None, None, None, None, None
