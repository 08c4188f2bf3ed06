"""Multi-resolution hash grid encoding (Instant-NGP) as an nn.Module, with config and kernel choice.

The fast kernels are registered by name in :data:`GRID_KERNELS`: ``numba`` (multi-threaded CPU kernels) and
``warp`` (NVIDIA Warp: the CUDA path, and a one-thread CPU path). ``implementation="auto"`` (the default) takes
the fastest one that can run a call (CPU: numba, then Warp; CUDA: Warp); naming a kernel uses that kernel only.
A kernel that cannot run (not installed, failed to compile or launch) hands the call to the next choice and,
in the end, to the plain-torch twin, with one warning naming the reason; other dtypes or devices go there
silently. ``"torch"`` always uses the twin (full second-order autograd). Inputs are points in normalised world
units inside [-bound, bound]^3; points outside are clamped. See `hash_grid_torch` for the conventions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lumisurf.encodings import hash_grid_numba, hash_grid_warp
from lumisurf.encodings import hash_grid_torch as ref
from lumisurf.errors import ConfigError
from lumisurf.registry import Registry

GridImplementation = Literal["auto", "torch", "warp", "numba"]


@dataclass(frozen=True)
class GridKernel:
    """A fast twin of the torch encoding for float32 on ``devices``. ``missing()``: why it cannot run at all (not
    installed), else None; ``apply(x, table, layout, bound, k, want_jac)``: feat [N, L*F] (and dfeat_dx
    [N, L*F, 3] when want_jac) from the first k levels."""

    apply: Callable
    missing: Callable[[], str | None]
    devices: tuple[str, ...]


GRID_KERNELS: Registry[GridKernel] = Registry("hash grid kernel")
GRID_KERNELS.register("numba")(GridKernel(hash_grid_numba.apply, hash_grid_numba.missing, ("cpu",)))
GRID_KERNELS.register("warp")(GridKernel(hash_grid_warp.apply, hash_grid_warp.missing, ("cpu", "cuda")))
AUTO_KERNELS = {"cpu": ("numba", "warp"), "cuda": ("warp",)}  # fastest first (benchmarks/hash_grid_speed.py)
_FAILURES: dict[tuple[str, str], str] = {}  # (kernel, device type) -> why it failed; later calls skip it
_WARNED: set[tuple[str, str]] = set()


def kernel_status(name: str, device_type: str = "cpu") -> str | None:
    """None when kernel ``name`` is usable so far on ``device_type``, else the reason it is not."""
    kernel = GRID_KERNELS.get(name)
    if device_type not in kernel.devices:
        return f"{name} kernels do not run on {device_type}"
    return _FAILURES.get((name, device_type)) or kernel.missing()


def _candidates(implementation: str, device_type: str) -> tuple[str, ...]:
    if implementation == "auto":
        return AUTO_KERNELS.get(device_type, ())
    return () if implementation == "torch" else (implementation,)


def _warn_once(name: str, device_type: str, reason: str, then: str) -> None:
    if (name, device_type) not in _WARNED:
        _WARNED.add((name, device_type))
        warnings.warn(
            f"lumisurf hash grid: {name} kernels unavailable on {device_type}, using {then} ({reason})",
            RuntimeWarning,
            stacklevel=4,
        )


def encode(
    implementation: str,
    x: torch.Tensor,
    table: torch.Tensor,
    layout: ref.GridLayout,
    bound: float,
    active_levels: int | None,
    want_jac: bool,
):
    """x [N,3] -> feat [N, L*F] (and dfeat_dx [N, L*F, 3] when want_jac) with the first fast kernel of
    ``implementation`` that runs, else the torch twin."""
    k = layout.n_levels if active_levels is None else max(0, min(int(active_levels), layout.n_levels))
    names, dev = _candidates(implementation, x.device.type), x.device.type
    if x.dtype != torch.float32 or table.dtype != torch.float32:
        names = ()  # the kernels are float32 only: other dtypes (float64 checks) take the twin silently
    for j, name in enumerate(names):
        kernel = GRID_KERNELS.get(name)
        if dev not in kernel.devices:
            continue
        reason = _FAILURES.get((name, dev)) or kernel.missing()
        if reason is None:
            try:
                return kernel.apply(x, table, layout, bound, k, want_jac)
            except Exception as exc:  # compile or launch failure: remember it, go on to the next choice
                reason = _FAILURES[(name, dev)] = f"{name} kernel failed: {type(exc).__name__}: {exc}"
        _warn_once(name, dev, reason, names[j + 1] if j + 1 < len(names) else "the torch reference")
    fn = ref.hash_encode_with_grad_torch if want_jac else ref.hash_encode_torch
    return fn(x, table, layout, bound, k)


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
    implementation: GridImplementation = "auto"

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
        if self.implementation != "auto" and self.implementation != "torch" and self.implementation not in GRID_KERNELS:
            raise ConfigError(
                f"hash grid: implementation must be one of auto, torch, "
                f"{', '.join(GRID_KERNELS.names())}; got {self.implementation!r}"
            )

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

    def forward(self, x: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """x [..., 3] -> [..., L*F]; ``levels``: only that many first levels are evaluated (the rest are 0)."""
        active = self.active_levels if levels is None else min(self.active_levels, int(levels))
        feat = encode(
            self.cfg.implementation, self._flat(x), self.params, self.layout, self.cfg.bound, active, want_jac=False
        )
        return feat.reshape(*x.shape[:-1], self.output_dim)

    def forward_with_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., 3] -> features [..., L*F] and analytic d features / d x [..., L*F, 3] (1/world units).

        Both outputs are differentiable w.r.t. the table (and x), so an eikonal loss built from
        dfeat_dx trains the grid without double backward.
        """
        feat, jac = encode(
            self.cfg.implementation,
            self._flat(x),
            self.params,
            self.layout,
            self.cfg.bound,
            self.active_levels,
            want_jac=True,
        )
        lead = x.shape[:-1]
        return feat.reshape(*lead, self.output_dim), jac.reshape(*lead, self.output_dim, 3)

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"levels={c.n_levels}, features={c.n_features}, log2_T={c.log2_table_size}, "
            f"res={self.resolutions[0]}..{self.resolutions[-1]}, impl={c.implementation}"
        )
