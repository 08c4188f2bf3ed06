"""Samplers: where along each ray the fields are evaluated."""

from __future__ import annotations

from lumisurf.samplers.ray_samplers import (
    background_samples,
    contract_inverted_sphere,
    interval_dists,
    merge_samples,
    near_far_sphere,
    neus_upsample,
    sample_pdf,
    stratified_samples,
)

__all__ = [
    "background_samples",
    "contract_inverted_sphere",
    "interval_dists",
    "merge_samples",
    "near_far_sphere",
    "neus_upsample",
    "sample_pdf",
    "stratified_samples",
]
