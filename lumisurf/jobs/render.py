"""``lumisurf render RUN``: rgb, normal and depth PNGs of a split's cameras."""
from __future__ import annotations

from pathlib import Path

from PIL import Image
from tqdm import tqdm

from lumisurf.errors import LumisurfError

from lumisurf.train.visualize import depth_image, normal_image, render_views_for, to_uint8


def renders_exist(loaded, split_name: str) -> bool:
    d = loaded.run.renders(split_name)
    return d.exists() and any(d.glob("*.png"))


def render_split(loaded, scene, split_name: str, downscale: int = 1, max_views: int | None = None,
                 progress: bool = True, save: bool = True, force: bool = False):
    """Render every view of ``split_name``; yields (index, outputs dict) and writes PNGs to RUN/renders/<split>.

    Existing renders are only replaced with ``force``.
    """
    split = scene.split(split_name)
    out_dir: Path = loaded.run.renders(split_name)
    if save and renders_exist(loaded, split_name) and not force:
        raise LumisurfError(f"{out_dir} already holds renders; pass --force to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(split) if max_views is None else min(max_views, len(split))
    for i in tqdm(range(n), desc=f"render {split_name}", disable=not progress):
        out = render_views_for(loaded.model, split, i, loaded.cfg, loaded.device, downscale)
        if save:
            stem = Path(split.files[i]).stem if split.files else f"{i:03d}"
            Image.fromarray(to_uint8(out["rgb"])).save(out_dir / f"{stem}_rgb.png")
            Image.fromarray(to_uint8(normal_image(out["normal"], out["opacity"]))).save(out_dir / f"{stem}_normal.png")
            Image.fromarray(to_uint8(depth_image(out["depth"], out["opacity"]))).save(out_dir / f"{stem}_depth.png")
        yield i, out
