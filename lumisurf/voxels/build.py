"""The sparse-voxel model's factories (registered in :mod:`lumisurf.kinds`): a fresh model for training (the
visual hull, or a saved voxel set), or one shaped like a checkpoint. The root cube is the normalised frame's
[-1, 1]^3."""

from __future__ import annotations

import torch

from lumisurf.errors import ConfigError
from lumisurf.voxels.adaptive import visual_hull_octree
from lumisurf.voxels.deferred import DeferredShading
from lumisurf.voxels.io import load_voxels
from lumisurf.voxels.model import SparseVoxelModel
from lumisurf.voxels.soft import SoftRaster

SCENE_MIN, EXTENT = -1.0, 2.0  # the root cube is the normalised frame's [-1, 1]^3


def build_shading(cfg):
    """The deferred shading module ``voxels.model.shading`` asks for (None for SH color)."""
    vm = cfg.voxels.model
    if vm.shading == "sh":
        return None
    if vm.mode != "sdf":
        raise ConfigError(f"voxels.model.shading={vm.shading} needs voxels.model.mode=sdf (normals come from the SDF)")
    return DeferredShading(vm.shading, cfg.model, amp=vm.amp)


def build_voxel_model(cfg, cameras=None, masks=None) -> SparseVoxelModel:
    """A fresh model: the voxel set of ``init_from`` (its mode must match), else the visual hull (or the dense
    cube) at ``init_level``; density -> ``geo_init``, or the SDF of a sphere of ``sdf_init_radius``."""
    vc = cfg.voxels.model
    if vc.init_from:
        model = load_voxels(vc.init_from)
        if model.mode != vc.mode or model.sh_bands != vc.sh_bands:
            raise ConfigError(
                f"voxels.model.init_from={vc.init_from} holds {model.mode} voxels with {model.sh_bands} SH "
                f"bands; this run wants {vc.mode} with {vc.sh_bands}"
            )
        model.n_samples, model.shading = vc.n_samples, build_shading(cfg)
        return with_soft(model, vc)
    tree = visual_hull_octree(vc.init_level, torch.full((3,), SCENE_MIN), EXTENT, cameras, masks)
    geo = vc.geo_init if vc.mode == "density" else tree.corner_positions().norm(dim=-1) - vc.sdf_init_radius
    model = SparseVoxelModel(
        tree,
        mode=vc.mode,
        sh_bands=vc.sh_bands,
        geo_init=geo,
        inv_s=vc.inv_s_init,
        n_samples=vc.n_samples,
        shading=build_shading(cfg),
    )
    return with_soft(model, vc)


def with_soft(model: SparseVoxelModel, vc) -> SparseVoxelModel:
    """``model`` set to the soft rasterization variants ``vc`` asks for (none by default)."""

    soft = SoftRaster(sigma=vc.soft_sigma, temperature=vc.soft_temperature)
    model.soft = soft if soft.active else None
    return model


def voxel_model_from_state(cfg, state: dict) -> SparseVoxelModel:
    """A model shaped like the checkpoint's model ``state`` (not yet loaded)."""
    return with_soft(
        SparseVoxelModel.from_state(
            state,
            cfg.voxels.model.mode,
            cfg.voxels.model.sh_bands,
            torch.full((3,), SCENE_MIN),
            EXTENT,
            build_shading(cfg),
        ),
        cfg.voxels.model,
    )
