"""``lumisurf relight RUN --env FILE.hdr``: a split's cameras rendered under a new environment map."""

from __future__ import annotations

from pathlib import Path

from lumisurf.data.hdr import read_hdr
from lumisurf.data.load import load_scene_normalized_as
from lumisurf.errors import LumisurfError
from lumisurf.jobs.material import load_material_run, material_dir
from lumisurf.jobs.material_eval import relight_views


def relight_job(
    root: Path,
    env: Path,
    split_name: str = "test",
    spp: int | None = None,
    samples: int | None = None,
    out: str | None = None,
    device: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Writes ``<out>/<view>.png`` (RGBA, sRGB, alpha = pixel coverage); returns the folder."""

    if not env.exists():
        raise LumisurfError(f"--env {env}: no such file")
    read_hdr(env)  # fail early, with the reader's message, on a bad file
    mrun = load_material_run(root, device)
    scene = load_scene_normalized_as(mrun.cfg.data, mrun.normalization)
    if split_name not in scene.splits:
        raise LumisurfError(f"--split {split_name}: the dataset has splits {sorted(scene.splits)}")
    out_dir = Path(out) if out else material_dir(mrun.run) / "relight" / f"{env.stem}-{split_name}"
    if out_dir.exists() and any(out_dir.glob("*.png")) and not force:
        raise LumisurfError(f"{out_dir} already holds renders; pass --force to replace them")
    m = mrun.cfg.material
    for _ in relight_views(
        mrun,
        scene.split(split_name),
        env,
        out_dir,
        spp or m.render_spp,
        samples or m.render_light_samples,
        progress=progress,
    ):
        pass
    return out_dir
