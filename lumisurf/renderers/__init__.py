"""Renderers: volume rendering functions (NeuS); rasterizer and mesh tracer live beside."""

from __future__ import annotations

from lumisurf.renderers.volume import (
    accumulate,
    alpha_from_sdf_interval,
    composite_background,
    neus_alpha,
    render_depth,
    render_weights,
    transmittance,
)

__all__ = [
    "accumulate",
    "alpha_from_sdf_interval",
    "composite_background",
    "neus_alpha",
    "render_depth",
    "render_weights",
    "transmittance",
]
