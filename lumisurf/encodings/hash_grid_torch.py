"""Plain-torch multi-resolution hash encoding (Instant-NGP): the reference twin of the Warp kernels.

Conventions (shared with the kernels in `hash_grid_warp.py` and `hash_grid_numba.py`):
- Points x in [-bound, bound]^3 (normalised world units) are clamped to the cube, then mapped to
  grid coordinates p = (x + bound) / (2 bound) * res, so level l has vertices 0..res per axis.
- The cell origin is i0 = min(floor(p), res - 1) and the local coordinate frac = p - i0 in [0, 1].
- Level rows: dense index ix + (res+1) * (iy + (res+1) * iz) when (res+1)^3 <= 2^T, otherwise the
  spatial hash (ix * 1) ^ (iy * 2654435761) ^ (iz * 805459861) mod 2^T (uint32 arithmetic).
- Corner c in 0..7 uses offsets (c & 1, (c >> 1) & 1, (c >> 2) & 1).
- Output features are level-major: column l * F + f.  dfeat_dx[n, l*F+f, d] = d feat / d x_d in
  1 / world units; it is zero along axes where the point lies outside the cube (clamp).
Everything here is plain autograd, so first and second derivatives (w.r.t. table and x) work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PRIMES = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class GridLayout:
    """Static per-level layout of the table: resolutions, row offsets, hashed flags and row counts."""

    resolutions: tuple[int, ...]
    offsets: tuple[int, ...]  # first row of each level in the shared table
    sizes: tuple[int, ...]  # rows of each level
    hashed: tuple[bool, ...]
    log2_table_size: int

    @property
    def n_levels(self) -> int:
        return len(self.resolutions)

    @property
    def total_entries(self) -> int:
        return self.offsets[-1] + self.sizes[-1]


def level_resolutions(n_levels: int, base_resolution: int, growth_factor: float) -> list[int]:
    """N_l = floor(N_min * b^l) (Instant-NGP eq. 2/3); a tiny epsilon guards round-off at the top."""
    return [int(math.floor(base_resolution * growth_factor**l + 1e-6)) for l in range(n_levels)]


def growth_from_max(n_levels: int, base_resolution: int, max_resolution: int) -> float:
    """b = exp((ln N_max - ln N_min) / (L - 1)); 1 for a single level."""
    if n_levels <= 1:
        return 1.0
    return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))


def make_layout(resolutions: list[int], log2_table_size: int) -> GridLayout:
    """Dense levels while (res+1)^3 fits in 2^T rows, hashed (2^T rows) beyond."""
    cap = 2**log2_table_size
    offsets, sizes, hashed, start = [], [], [], 0
    for res in resolutions:
        dense_rows = (res + 1) ** 3
        is_hashed = dense_rows > cap
        size = cap if is_hashed else dense_rows
        offsets.append(start)
        sizes.append(size)
        hashed.append(is_hashed)
        start += size
    return GridLayout(tuple(resolutions), tuple(offsets), tuple(sizes), tuple(hashed), log2_table_size)


def _level_tensors(layout: GridLayout, n: int, device: torch.device):
    """Per-level constants as [n] tensors for the first n levels."""
    res = torch.tensor(layout.resolutions[:n], device=device, dtype=torch.int64)
    off = torch.tensor(layout.offsets[:n], device=device, dtype=torch.int64)
    hashed = torch.tensor(layout.hashed[:n], device=device, dtype=torch.bool)
    return res, off, hashed


def grid_coords(x: torch.Tensor, res: torch.Tensor, bound: float):
    """x [N,3] -> cell origin i0 [N,L,3] (int64), frac [N,L,3], dp/dx [N,L,3] (0 where x was clamped)."""
    inside = (x.abs() <= bound).to(x.dtype)  # [N, 3]; matches torch.clamp's gradient mask
    u = (x.clamp(-bound, bound) + bound) / (2.0 * bound)  # [N, 3] in [0, 1]
    resf = res.to(x.dtype)[None, :, None]  # [1, L, 1]
    p = u[:, None, :] * resf  # [N, L, 3]
    i0 = torch.minimum(torch.floor(p.detach()), resf - 1).to(torch.int64)
    frac = p - i0.to(x.dtype)
    dp_dx = inside[:, None, :] * (resf / (2.0 * bound))  # [N, L, 3]
    return i0, frac, dp_dx


def _outer3(ax: torch.Tensor, ay: torch.Tensor, az: torch.Tensor, op) -> torch.Tensor:
    """Per-axis corner terms [N,L,2] -> [N,L,8], corner c = bx + 2 by + 4 bz (x fastest)."""
    return op(op(az[..., :, None, None], ay[..., None, :, None]), ax[..., None, None, :]).flatten(-3)


def corner_rows(
    i0: torch.Tensor, res: torch.Tensor, off: torch.Tensor, hashed: torch.Tensor, log2_table_size: int
) -> torch.Tensor:
    """i0 [N,L,3] -> global table rows of the 8 cell corners [N,L,8] (int64)."""
    v = i0[..., None] + torch.arange(2, device=i0.device)  # [N, L, 3, 2] vertex coords per axis
    n_dense = int((~hashed).sum())  # levels are sorted by resolution, so dense ones come first
    parts = []
    if n_dense > 0:
        vd, s = v[:, :n_dense], (res[:n_dense] + 1)[None, :, None]  # [1, Ld, 1]
        parts.append(_outer3(vd[:, :, 0], vd[:, :, 1] * s, vd[:, :, 2] * (s * s), torch.add))
    if n_dense < v.shape[1]:
        vh = v[:, n_dense:]
        h = _outer3(vh[:, :, 0] * PRIMES[0], vh[:, :, 1] * PRIMES[1], vh[:, :, 2] * PRIMES[2], torch.bitwise_xor)
        parts.append(h & (2**log2_table_size - 1))  # low bits equal uint32 wrap-around arithmetic
    local = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return local + off[None, :, None]


def trilinear_weights_and_grad(frac: torch.Tensor):
    """frac [N,L,3] -> weights [N,L,8] and their derivative w.r.t. frac [N,L,8,3]."""
    w1 = torch.stack([1 - frac, frac], dim=-1)  # [N, L, 3, 2] per-axis weights of the two vertices
    sign = torch.tensor([-1.0, 1.0], dtype=frac.dtype, device=frac.device).expand_as(w1[:, :, 0])
    wx, wy, wz = w1.unbind(2)
    weights = _outer3(wx, wy, wz, torch.mul)
    dw = torch.stack(
        [_outer3(sign, wy, wz, torch.mul), _outer3(wx, sign, wz, torch.mul), _outer3(wx, wy, sign, torch.mul)], dim=-1
    )
    return weights, dw


def _gather(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """rows [N,L,8] -> corner features [N,L,8,F] (index_select: its backward is a fast index_add)."""
    return table.index_select(0, rows.reshape(-1)).view(*rows.shape, table.shape[1])


def to_point_major(t_lm: torch.Tensor, n_levels: int) -> torch.Tensor:
    """[k, N, F(, 3)] level-major kernel output -> [N, L*F(, 3)], zero for levels >= k (one copy)."""
    k, n_pts, n_feat = t_lm.shape[:3]
    tail = tuple(t_lm.shape[3:])
    if k == n_levels:  # one copy, no zero fill
        return t_lm.transpose(0, 1).reshape((n_pts, n_levels * n_feat) + tail)
    out = t_lm.new_zeros((n_pts, n_levels, n_feat) + tail)
    out[:, :k] = t_lm.transpose(0, 1)
    return out.reshape((n_pts, n_levels * n_feat) + tail)


def to_level_major(g: torch.Tensor, k: int, n_feat: int) -> torch.Tensor:
    """[N, L*F(, 3)] upstream gradient -> contiguous [k, N, F(, 3)] for the first k levels.

    L is spelled out (not -1) so that N = 0 reshapes too (no samples reached the field).
    """
    n_pts, n_levels = g.shape[0], g.shape[1] // n_feat
    g = g.reshape((n_pts, n_levels, n_feat) + tuple(g.shape[2:]))[:, :k]
    return g.transpose(0, 1).contiguous()


def _pad_levels(t: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Zero-fill inactive levels: t [N, k, ...] -> [N, n_levels, ...]."""
    k = t.shape[1]
    if k == n_levels:
        return t
    pad = t.new_zeros((t.shape[0], n_levels - k) + tuple(t.shape[2:]))
    return torch.cat([t, pad], dim=1)


def hash_encode_torch(
    x: torch.Tensor, table: torch.Tensor, layout: GridLayout, bound: float = 1.0, active_levels: int | None = None
) -> torch.Tensor:
    """Encode x [N,3] with table [total_entries, F] -> [N, L*F]; levels >= active_levels give 0."""
    feat, _ = _encode(x, table, layout, bound, active_levels, with_grad=False)
    return feat


def hash_encode_with_grad_torch(
    x: torch.Tensor, table: torch.Tensor, layout: GridLayout, bound: float = 1.0, active_levels: int | None = None
):
    """Features [N, L*F] and the analytic spatial Jacobian dfeat_dx [N, L*F, 3] (differentiable)."""
    return _encode(x, table, layout, bound, active_levels, with_grad=True)


def _encode(x, table, layout, bound, active_levels, with_grad: bool):
    n_levels, n_feat, n_pts = layout.n_levels, table.shape[1], x.shape[0]
    k = n_levels if active_levels is None else max(0, min(int(active_levels), n_levels))
    if k == 0:  # zeros that still hang on table (and x), like the Warp path: backward gives zero grads
        tie = table[:0].sum() + x[:0].sum().to(table.dtype)  # 0-d zero, empty slices: no cost
        feat = table.new_zeros(n_pts, n_levels * n_feat) + tie
        return feat, (table.new_zeros(n_pts, n_levels * n_feat, 3) + tie if with_grad else None)
    res, off, hashed = _level_tensors(layout, k, x.device)
    i0, frac, dp_dx = grid_coords(x.to(table.dtype), res, bound)
    rows = corner_rows(i0, res, off, hashed, layout.log2_table_size)
    weights, dw = trilinear_weights_and_grad(frac)
    corners = _gather(table, rows)  # [N, k, 8, F]
    feat = (weights[..., None] * corners).sum(dim=2)  # [N, k, F]
    feat = _pad_levels(feat, n_levels).reshape(n_pts, n_levels * n_feat)
    if not with_grad:
        return feat, None
    jac = torch.stack([(dw[..., d, None] * corners).sum(dim=2) for d in range(3)], dim=-1)  # [N, k, F, 3]
    jac = jac * dp_dx[:, :, None, :]
    jac = _pad_levels(jac, n_levels).reshape(n_pts, n_levels * n_feat, 3)
    return feat, jac
