"""The surface model's factories (``build_surface_model`` and ``surface_model_from_state`` are registered in
:mod:`lumisurf.kinds`)."""

from __future__ import annotations

from lumisurf.models.surface import SurfaceModel


def background_kind(kind: str, has_masks: bool) -> str:
    """``model.background.kind`` resolved: ``auto`` is a constant color behind masked data, else NeRF++."""
    if kind == "auto":
        return "constant" if has_masks else "nerf++"
    return kind


def build_model(model_cfg, sampler_cfg, has_masks: bool) -> SurfaceModel:
    """The surface model of a config for a dataset with (or without) foreground masks."""
    return SurfaceModel(model_cfg, sampler_cfg, background_kind(model_cfg.background.kind, has_masks))


def build_surface_model(cfg, cameras=None, masks=None) -> SurfaceModel:
    """A fresh model of ``cfg`` for a dataset with (or without: ``masks`` None) foreground masks."""
    return build_model(cfg.model, cfg.sampler, masks is not None)


def surface_model_from_state(cfg, state: dict) -> SurfaceModel:
    """A model shaped like the checkpoint's model ``state`` (not loaded). Runs saved before the config named
    the resolved background say ``auto``: their state tells whether a NeRF++ background was trained."""
    has_masks = True  # only read when the config says "auto"
    if cfg.model.background.kind == "auto":
        has_masks = not any(k.startswith("background.") for k in state)
    return build_model(cfg.model, cfg.sampler, has_masks)
