"""The one protocol every model kind implements: what the jobs (extract, render, eval, view, material) may ask.

A model says what it can do through class facts and properties, never through attributes that callers probe.
Everything is in the run's normalised frame (the object inside the unit sphere); cameras are
:class:`lumisurf.data.cameras.Cameras` (OpenCV: x right, y down, z forward).

A kind is registered once, in :mod:`lumisurf.kinds`: its class and its two factories (a fresh model for
training, a model shaped like a checkpoint).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import Tensor, nn

from lumisurf.registry import Registry

SurfaceFn = Callable[[Tensor], Tensor]  # points [P, 3] -> signed distance [P] (negative inside)


class SceneModel(nn.Module, ABC):
    """Base of every model kind (the neural SDF field, the sparse voxels)."""

    kind: ClassVar[str] = ""  # the ``model.kind`` that builds it
    stores_voxels: ClassVar[bool] = False  # extract writes RUN/voxels.pt and RUN/voxels.ply
    data_parallel: ClassVar[bool] = False  # can train on several ranks (``train --nproc``)
    single_process_why: ClassVar[str] = "this model trains on one process"  # said when ranks are refused
    segmented: bool = False  # a material assignment over K shading heads
    # the config sections (dotted) its kind reads besides those every run reads (data, train, eval, material);
    # a run that sets anything else is told, in one line, that its model ignores it
    config_sections: ClassVar[tuple[str, ...]] = ()

    @property
    def has_stage1_materials(self) -> bool:
        """Albedo / metallic / roughness heads and a light (NeRO-style shading)."""
        return False

    @classmethod
    def config_has_stage1_materials(cls, cfg) -> bool:
        """Whether a model built from ``cfg`` will have :attr:`has_stage1_materials` (before it is built)."""
        return False

    @property
    def surface_needs_cameras(self) -> bool:
        """Its surface is fused from rendered depth, so :meth:`surface_function` wants the training cameras."""
        return False

    @abstractmethod
    def render_camera(
        self, cameras, cam: int, bg_color: Tensor, state: Any = None, chunk: int = 1024, downscale: int = 1
    ) -> dict[str, Tensor]:
        """No-grad render of camera ``cam`` over ``bg_color`` [3]: rgb [h, w, 3], opacity [h, w, 1], depth [h, w, 1]
        (ray distance), normal [h, w, 3], plus the kind's extras (e.g. material_probs [h, w, K])."""

    @abstractmethod
    def surface_function(self, cameras=None, resolution: int = 256, progress: bool = False) -> SurfaceFn:
        """The function marching cubes meshes (``cameras``: the training views, for :attr:`surface_needs_cameras`
        models; ``resolution``: the grid's, for truncation widths)."""

    @abstractmethod
    def vertex_shading(
        self, vertices: np.ndarray, normals: np.ndarray | None, chunk: int = 8192
    ) -> dict[str, np.ndarray]:
        """Shading at surface ``vertices`` [V, 3] with the mesh's unit ``normals`` [V, 3] (None: the model's own,
        for a field that has them), seen by a camera 2 units out along the normal: ``rgb`` [V, 3] (sRGB in [0, 1])
        and, with material heads, ``albedo`` [V, 3], ``metallic`` [V, 1], ``roughness`` [V, 1], ``probs`` [V, K]."""

    @abstractmethod
    def param_groups(self, cfg) -> list[dict]:
        """Its optimiser groups, each named (``name``) and holding ``params`` and ``lr`` from the run's config
        ``cfg`` (a :class:`lumisurf.config.Config`); together they hold every trainable parameter once."""

    def occupied_cells(self) -> Tensor | None:
        """Centres [M, 3] of the space the model fills now (the live viewer's point cloud), or None."""
        return None


@dataclass(frozen=True)
class ModelKind:
    """A registered model kind: its class, factories and trainer.

    ``build(cfg, cameras, masks)``: a fresh model for training (``cameras``: the training views; ``masks``
    [N, H, W] bool or None). ``from_checkpoint(cfg, path, device)``: a model shaped like the checkpoint (its
    weights not yet loaded). ``trainer(cfg, run, scene=, progress=, dist=, resume=)``: its client of the one
    training loop (:class:`lumisurf.train.loop.TrainingLoop`).
    """

    cls: type[SceneModel]
    build: Callable[..., SceneModel]
    from_checkpoint: Callable[..., SceneModel]
    trainer: type


MODEL_KINDS: Registry[ModelKind] = Registry("model kind")


def missing_protocol(cls: type) -> list[str]:
    """The protocol members ``cls`` leaves abstract (empty when it implements the whole protocol)."""
    return sorted(getattr(cls, "__abstractmethods__", ()))
