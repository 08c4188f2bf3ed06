"""The trainer of a config's method (the neural-field :class:`Trainer` or the sparse-voxel one) and ``train``.

Kept apart from both trainers so that neither imports the other.
"""

from __future__ import annotations

from lumisurf.config import Config
from lumisurf.data.scene import SceneData
from lumisurf.errors import ConfigError
from lumisurf.kinds import model_kind
from lumisurf.registry import Registry
from lumisurf.train.distributed import SINGLE, Distributed
from lumisurf.train.loop import TrainResult
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer
from lumisurf.train.voxel_trainer import VoxelTrainer

TRAINERS: Registry[type] = Registry("trainer")  # model.kind -> its training loop
TRAINERS.register("field")(Trainer)
TRAINERS.register("voxels")(VoxelTrainer)


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
):
    """The trainer of the config's model kind (:data:`TRAINERS`)."""
    check_data_parallel(cfg, dist.world_size)
    return TRAINERS.get(cfg.model.kind)(cfg, run, scene=scene, progress=progress, dist=dist, resume=resume)


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
