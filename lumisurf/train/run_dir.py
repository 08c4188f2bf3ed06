"""A run folder holds everything ``extract/render/eval`` need: config, normalisation, checkpoints.

Layout::

    RUN/config.yaml          full config (the data path is stored absolute)
    RUN/normalization.json   world <-> normalised similarity of the dataset
    RUN/ckpt/last.pt         model + optimiser + step
    RUN/scalars.csv          training scalars
    RUN/val/step_XXXXXX.png  validation renders
    RUN/mesh.ply             extracted mesh, dataset world frame
    RUN/renders/<split>/     rendered views
    RUN/metrics.json         evaluation
"""

from __future__ import annotations

from pathlib import Path

from lumisurf.config import Config, load_config, save_config
from lumisurf.data.scene import Normalization
from lumisurf.errors import LumisurfError


class RunDir:
    def __init__(self, root: Path):
        self.root = Path(root)

    config_path = property(lambda self: self.root / "config.yaml")
    norm_path = property(lambda self: self.root / "normalization.json")
    ckpt_path = property(lambda self: self.root / "ckpt" / "last.pt")
    scalars_path = property(lambda self: self.root / "scalars.csv")
    mesh_path = property(lambda self: self.root / "mesh.ply")
    metrics_path = property(lambda self: self.root / "metrics.json")

    def renders(self, split: str) -> Path:
        return self.root / "renders" / split

    def check_new(self, force: bool, resume: bool) -> None:
        """Refuse to clobber an existing run unless force or resume (and to resume without a checkpoint)."""
        if self.config_path.exists() and not (force or resume):
            raise LumisurfError(
                f"{self.root} already holds a run; pass --resume to continue it or --force to overwrite it"
            )
        if resume and not self.ckpt_path.exists():
            raise LumisurfError(f"--resume: no checkpoint at {self.ckpt_path}")

    def prepare_new(self, cfg: Config, force: bool, resume: bool) -> None:
        """Create the folder for a new run (after :meth:`check_new`)."""
        self.check_new(force, resume)
        (self.root / "ckpt").mkdir(parents=True, exist_ok=True)
        (self.root / "val").mkdir(exist_ok=True)
        save_config(cfg, self.config_path)

    def load_config(self) -> Config:
        if not self.config_path.exists():
            raise LumisurfError(f"{self.root} is not a lumisurf run folder (no config.yaml)")
        return load_config(self.config_path)

    def load_normalization(self) -> Normalization:
        if not self.norm_path.exists():
            raise LumisurfError(f"{self.norm_path} is missing: was the run trained with this version?")
        return Normalization.load(self.norm_path)

    def require_checkpoint(self) -> Path:
        if not self.ckpt_path.exists():
            raise LumisurfError(f"{self.root}: no checkpoint ({self.ckpt_path}); train first")
        return self.ckpt_path
