"""The viewer's relit mode for Stage II runs (``RUN/material/material.pt``): the mesh and its fitted materials
path-traced (1 ray a pixel, few light samples: a preview) under the learned environment map or a chosen .hdr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lumisurf.data.color_space import linear_to_srgb
from lumisurf.jobs.material import load_material_run
from lumisurf.jobs.material_eval import relight_lighting
from lumisurf.jobs.viewer.scene_graph import bands_of
from lumisurf.renderers.mesh_render import render_mesh_view
from lumisurf.train.visualize import to_uint8


class Relighter:
    """Relit renders of a Stage II run; ``names``: "learned" and the stems of ``env_files``."""

    def __init__(self, root: Path, env_files=(), device=None, light_samples: int = 16):
        self.mrun = load_material_run(Path(root), device)
        self.light_samples = light_samples
        self.envs = {"learned": (self.mrun.lighting, None)}
        for f in env_files:
            self.envs[Path(f).stem] = relight_lighting(self.mrun, Path(f))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.envs)

    def render(self, cams, name: str, cancelled, bands: int = 8) -> np.ndarray | None:
        """uint8 [h, w, 3] of camera 0 under environment ``name``, over white; None when ``cancelled()``."""

        lighting, sampler = self.envs[name]
        rows = []
        for band in bands_of(cams.to(self.mrun.device), bands):
            if cancelled():
                return None
            with torch.no_grad():
                rgb, alpha = render_mesh_view(
                    self.mrun.tracer,
                    self.mrun.field,
                    lighting,
                    band,
                    0,
                    spp=1,
                    light_samples=self.light_samples,
                    env_sampler=sampler,
                    generator=torch.Generator().manual_seed(0),
                )
            a = alpha[..., None]
            rows.append(to_uint8(linear_to_srgb(rgb) * a + (1 - a)))
        return np.concatenate(rows, 0)
