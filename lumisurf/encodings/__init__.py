"""Input encodings: multi-resolution hash grid (torch reference + Warp kernels)."""

from __future__ import annotations

from lumisurf.encodings.hash_grid import HashGrid, HashGridConfig

__all__ = ["HashGrid", "HashGridConfig"]
