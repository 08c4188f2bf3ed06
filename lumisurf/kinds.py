"""Every model kind, registered in one place: ``model.kind`` -> its class and factories.

Adding a kind: a package whose model subclasses :class:`lumisurf.models.protocol.SceneModel`, and one line here.
"""

from __future__ import annotations

from lumisurf.models.protocol import MODEL_KINDS, ModelKind
from lumisurf.models.surface import SurfaceModel
from lumisurf.models.surface_io import build_surface_model, surface_model_from_state
from lumisurf.voxels.build import build_voxel_model, voxel_model_from_state
from lumisurf.voxels.model import SparseVoxelModel

MODEL_KINDS.register("field")(ModelKind(SurfaceModel, build_surface_model, surface_model_from_state))
MODEL_KINDS.register("voxels")(ModelKind(SparseVoxelModel, build_voxel_model, voxel_model_from_state))


def model_kind(name: str) -> ModelKind:
    """The registered kind ``name`` (``model.kind``); a KeyError lists the choices."""
    return MODEL_KINDS.get(name)
