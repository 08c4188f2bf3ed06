"""Every model kind, registered in one place: ``model.kind`` -> its class, factories and trainer; and the
functions that train a config's kind (``build_trainer``, ``train``).

Adding a kind: a package whose model subclasses :class:`lumisurf.models.protocol.SceneModel` and whose trainer
is a client of :class:`lumisurf.train.loop.TrainingLoop`, and one line here. Sits above ``train/`` (it names
the trainers) and below the application layer (``jobs/``).
"""

from __future__ import annotations

from lumisurf.config import Config
from lumisurf.data.scene import SceneData
from lumisurf.errors import ConfigError
from lumisurf.models.protocol import MODEL_KINDS, ModelKind
from lumisurf.models.surface import SurfaceModel
from lumisurf.models.surface_io import build_surface_model, surface_model_from_state
from lumisurf.train.distributed import SINGLE, Distributed
from lumisurf.train.loop import TrainingLoop, TrainResult
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer
from lumisurf.train.voxel_trainer import VoxelTrainer
from lumisurf.voxels.build import build_voxel_model, voxel_model_from_state
from lumisurf.voxels.model import SparseVoxelModel

MODEL_KINDS.register("field")(ModelKind(SurfaceModel, build_surface_model, surface_model_from_state, Trainer))
MODEL_KINDS.register("voxels")(ModelKind(SparseVoxelModel, build_voxel_model, voxel_model_from_state, VoxelTrainer))


def model_kind(name: str) -> ModelKind:
    """The registered kind ``name`` (``model.kind``); a KeyError lists the choices."""
    return MODEL_KINDS.get(name)


def check_data_parallel(cfg: Config, world_size: int) -> None:
    """ConfigError when ``world_size`` ranks cannot train ``cfg`` (checked before any rank does any work)."""
    if world_size <= 1:
        return
    cls = model_kind(cfg.model.kind).cls
    if not cls.data_parallel:
        raise ConfigError(
            f"preset {cfg.preset}: {cls.single_process_why}; data-parallel training is for the neural-field presets"
        )
    Distributed(0, world_size).share(cfg.train.batch_rays)  # an uneven split is refused


def build_trainer(
    cfg: Config,
    run: RunDir,
    scene: SceneData | None = None,
    progress: bool = True,
    resume: bool = False,
    dist: Distributed = SINGLE,
) -> TrainingLoop:
    """The trainer of the config's model kind."""
    check_data_parallel(cfg, dist.world_size)
    return model_kind(cfg.model.kind).trainer(cfg, run, scene=scene, progress=progress, dist=dist, resume=resume)


def train(
    cfg: Config,
    run: RunDir,
    resume: bool = False,
    progress: bool = True,
    scene: SceneData | None = None,
    hooks=(),
    dist: Distributed = SINGLE,
) -> TrainResult:
    """Build the config's trainer and fit; ``hooks``: callables ``(loop, scalars)`` after every step (rank 0)."""
    trainer = build_trainer(cfg, run, scene, progress, resume, dist)
    trainer.step_hooks = tuple(hooks)
    return trainer.fit(resume=resume)
