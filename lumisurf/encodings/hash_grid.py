"""Multi-resolution hash grid encoding (Instant-NGP) as an nn.Module, with config and backend choice.

`implementation="warp"` runs the Warp kernels (CPU or CUDA, from the input's device) and falls back
to the plain-torch twin with one warning when Warp cannot be used; `"torch"` always uses the twin
(full second-order autograd).  Inputs are points in normalised world units inside [-bound, bound]^3;
points outside are clamped.  See `hash_grid_torch` for indexing/hash conventions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lumisurf.encodings import hash_grid_torch as ref
from lumisurf.encodings import hash_grid_warp as fast
from lumisurf.errors import ConfigError


@dataclass
class HashGridConfig:
    """L levels of F features, 2^T rows per hashed level, N_min base resolution.

    The per-level growth b is `growth_factor` when set, else derived from `max_resolution`.
    """

    n_levels: int = 16
    n_features: int = 2
    log2_table_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    growth_factor: float | None = None
    bound: float = 1.0
    implementation: Literal["torch", "warp"] = "warp"

    def validate(self) -> None:
        """Raise ConfigError on values the encoding cannot use."""
        if self.n_levels < 1 or self.n_features < 1:
            raise ConfigError("hash grid: n_levels and n_features must be >= 1")
        if not 1 <= self.log2_table_size <= 30:
            raise ConfigError(f"hash grid: log2_table_size must be in [1, 30], got {self.log2_table_size}")
        if self.base_resolution < 1 or self.max_resolution < self.base_resolution:
            raise ConfigError("hash grid: need 1 <= base_resolution <= max_resolution")
        if self.growth_factor is not None and self.growth_factor < 1.0:
            raise ConfigError(f"hash grid: growth_factor must be >= 1, got {self.growth_factor}")
        if self.bound <= 0:
            raise ConfigError(f"hash grid: bound must be > 0, got {self.bound}")
        if self.implementation not in ("torch", "warp"):
            raise ConfigError(f"hash grid: implementation must be 'torch' or 'warp', got {self.implementation!r}")

    def growth(self) -> float:
        if self.growth_factor is not None:
            return float(self.growth_factor)
        return ref.growth_from_max(self.n_levels, self.base_resolution, self.max_resolution)


class HashGrid(nn.Module):
    """x [..., 3] -> features [..., n_levels * n_features]; levels >= active_levels output 0."""

    def __init__(self, cfg: HashGridConfig | None = None):
        super().__init__()
        cfg = cfg or HashGridConfig()
        cfg.validate()
        self.cfg = cfg
        self.resolutions: list[int] = ref.level_resolutions(cfg.n_levels, cfg.base_resolution, cfg.growth())
        self.layout = ref.make_layout(self.resolutions, cfg.log2_table_size)
        self.output_dim = cfg.n_levels * cfg.n_features
        self.active_levels = cfg.n_levels
        table = torch.empty(self.layout.total_entries, cfg.n_features)
        self.params = nn.Parameter(table.uniform_(-1e-4, 1e-4))  # [total_entries, F]

    @property
    def n_levels(self) -> int:
        return self.cfg.n_levels

    @property
    def hashed_levels(self) -> list[bool]:
        """Per level: True when the level uses the spatial hash, False when dense."""
        return list(self.layout.hashed)

    def set_active_levels(self, k: int) -> None:
        """Coarse-to-fine: only the first k levels contribute (clamped to [0, n_levels])."""
        self.active_levels = max(0, min(int(k), self.cfg.n_levels))

    def level_slice(self, level: int) -> slice:
        """Rows of `params` that belong to `level` (e.g. for TV/L2 regularisers on the grid)."""
        start = self.layout.offsets[level]
        return slice(start, start + self.layout.sizes[level])

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 3:
            raise ValueError(f"HashGrid expects points [..., 3], got {tuple(x.shape)}")
        return x.reshape(-1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., 3] -> [..., L*F]."""
        flat = self._flat(x)
        fn = fast.hash_encode_warp if self.cfg.implementation == "warp" else ref.hash_encode_torch
        feat = fn(flat, self.params, self.layout, self.cfg.bound, self.active_levels)
        return feat.reshape(*x.shape[:-1], self.output_dim)

    def forward_with_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., 3] -> features [..., L*F] and analytic d features / d x [..., L*F, 3] (1/world units).

        Both outputs are differentiable w.r.t. the table (and x), so an eikonal loss built from
        dfeat_dx trains the grid without double backward.
        """
        flat = self._flat(x)
        fn = fast.hash_encode_with_grad_warp if self.cfg.implementation == "warp" else ref.hash_encode_with_grad_torch
        feat, jac = fn(flat, self.params, self.layout, self.cfg.bound, self.active_levels)
        lead = x.shape[:-1]
        return feat.reshape(*lead, self.output_dim), jac.reshape(*lead, self.output_dim, 3)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"levels={c.n_levels}, features={c.n_features}, log2_T={c.log2_table_size}, "
                f"res={self.resolutions[0]}..{self.resolutions[-1]}, impl={c.implementation}")
