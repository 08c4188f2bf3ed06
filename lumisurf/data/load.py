"""Load the scene a config names (a dataset folder or the built-in synthetic scene), normalised."""

from __future__ import annotations

from pathlib import Path

import torch

from lumisurf.data.normalization import check_cameras_outside, normalize_scene
from lumisurf.data.readers import load_scene
from lumisurf.data.scene import SceneData
from lumisurf.data.synthetic import make_synthetic_scene


def load_config_scene(data_cfg) -> SceneData:
    """Scene for ``data_cfg`` (a :class:`lumisurf.config.DataConfig`), cameras in the normalised frame.

    Raises DataError when most training cameras lie inside the unit sphere (nothing to train on).
    """
    scene = normalize_scene(load_raw_scene(data_cfg), method=data_cfg.normalization)
    check_cameras_outside(scene)
    return scene


def load_raw_scene(data_cfg) -> SceneData:
    """Scene for ``data_cfg`` in the dataset's own world frame (not normalised)."""
    if data_cfg.path is None:
        n_test = max(4, data_cfg.synthetic_views // 5)
        return make_synthetic_scene(
            n_train=data_cfg.synthetic_views, n_test=n_test, resolution=data_cfg.synthetic_resolution
        )
    return load_scene(
        Path(data_cfg.path),
        format=data_cfg.format,
        holdout_every=data_cfg.holdout_every,
        max_views=data_cfg.max_views,
        downscale=data_cfg.downscale,
    )


def background_color(kind: str, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """Per-ray background color [n, 3] for masked data: white, black or uniform random."""
    if kind == "white":
        return torch.ones(n, 3, device=device)
    if kind == "black":
        return torch.zeros(n, 3, device=device)
    return torch.rand(n, 3, generator=generator, device="cpu").to(device)


def composite(rgb: torch.Tensor, mask: torch.Tensor | None, bg: torch.Tensor) -> torch.Tensor:
    """Straight color over a background by coverage: rgb * m + bg * (1 - m). rgb, bg [..., 3]; mask [..., 1]."""
    if mask is None:
        return rgb
    return rgb * mask + bg * (1.0 - mask)


def load_scene_normalized_as(data_cfg, normalization) -> SceneData:
    """Scene for ``data_cfg`` moved into the frame of a *given* normalisation (the one a run trained in)."""
    from dataclasses import replace

    scene = load_raw_scene(data_cfg)
    center = torch.tensor(normalization.center, dtype=torch.float32)
    splits = {
        k: replace(s, cameras=s.cameras.transformed(normalization.scale, center)) for k, s in scene.splits.items()
    }
    return replace(scene, splits=splits, normalization=normalization, normalized=True)
