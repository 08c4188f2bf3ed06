"""``lumisurf render RUN``: rgb, normal and depth PNGs of a split's cameras, or of a camera path (orbit, spiral,
interpolation, a JSON file) as PNG frames and an MP4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lumisurf.data.camera_paths import make_path
from lumisurf.data.capture.frames import imageio_ffmpeg
from lumisurf.errors import LumisurfError
from lumisurf.train.visualize import depth_image, normal_image, render_camera_for, render_views_for, to_uint8


def renders_exist(loaded, split_name: str) -> bool:
    d = loaded.run.renders(split_name)
    return d.exists() and any(d.glob("*.png"))


def render_split(
    loaded,
    scene,
    split_name: str,
    downscale: int = 1,
    max_views: int | None = None,
    progress: bool = True,
    save: bool = True,
    force: bool = False,
):
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


def write_video(frames: list[np.ndarray], path: Path, fps: int = 24) -> Path:
    """H.264 MP4 of uint8 frames [H, W, 3] (imageio-ffmpeg, extra ``capture``); odd sizes are padded by one
    pixel (yuv420p needs even ones)."""
    ffmpeg = imageio_ffmpeg("--video (the PNG frames are written without it)")
    h, w = frames[0].shape[:2]
    size = (w + w % 2, h + h % 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = ffmpeg.write_frames(str(path), size, fps=fps, quality=8, macro_block_size=1)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(np.pad(f, ((0, size[1] - h), (0, size[0] - w), (0, 0)), mode="edge")))
    writer.close()
    return path


def render_path(
    loaded,
    scene,
    kind: str,
    frames: int,
    video: Path | None = None,
    side_by_side: bool = False,
    downscale: int = 1,
    fps: int = 24,
    progress: bool = True,
) -> Path:
    """Render ``frames`` cameras of path ``kind`` (orbit | spiral | interp | FILE.json, :mod:`camera_paths`)
    to ``RUN/renders/path_<name>/frame_XXXX.png`` (rgb, or rgb | normal | depth with ``side_by_side``) and,
    with ``video``, an MP4; returns the frame folder."""
    split = scene.split("train")
    cams = make_path(kind, split.cameras, frames, scene.normalization).to(loaded.device)
    name = Path(kind).stem if kind.endswith(".json") else kind
    out_dir = loaded.run.renders(f"path_{name}")
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for i in tqdm(range(frames), desc=f"render path {name}", disable=not progress):
        out = render_camera_for(loaded.model, cams, i, loaded.cfg, loaded.device, downscale)
        img = to_uint8(out["rgb"])
        if side_by_side:
            img = np.concatenate(
                [
                    img,
                    to_uint8(normal_image(out["normal"], out["opacity"])),
                    to_uint8(depth_image(out["depth"], out["opacity"])),
                ],
                axis=1,
            )
        Image.fromarray(img).save(out_dir / f"frame_{i:04d}.png")
        images.append(img)
    if video is not None:
        write_video(images, Path(video), fps)
    return out_dir
