"""``lumisurf data process``: a folder of photos or a video -> a COLMAP dataset lumisurf reads.

Output layout (COLMAP's, read by :mod:`lumisurf.data.readers.colmap`)::

    DATASET/images/        the photos, upright (EXIF applied), one orientation and size; video frames as PNG
    DATASET/images_2/, images_4/   box-downscaled copies (``data.downscale=2|4`` reads them)
    DATASET/masks/         (with --masks DIR or auto) one PNG per image, white = object
    DATASET/masks_overview.png   (with --masks auto) 16 views, the background darkened
    DATASET/sparse/0/      cameras.bin, images.bin, points3D.bin (+ COLMAP 4's rigs.bin, frames.bin)
    DATASET/database.db    SIFT features and matches (delete it when done)
    DATASET/process_report.json   registered / total, reprojection error, track length, timings
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lumisurf.data.capture.dataset_masks import dataset_auto_masks, write_masks
from lumisurf.data.capture.frames import VIDEO_EXTS, count_frames, list_photos, load_photo, photo_size, pick_frames
from lumisurf.data.capture.sfm import Matcher, pick_matcher, run_sfm
from lumisurf.data.images import reduce_image
from lumisurf.errors import DataError, DataWarning

DOWNSCALES = (2, 4)


@dataclass
class ProcessOptions:
    frames: int = 120  # video: frames kept (the sharpest of each of this many equal stretches)
    matcher: Matcher = "auto"
    masks: str | None = None  # a folder of user masks (same file stems as the photos), or "auto" (after SfM)
    max_image_size: int = 2000  # SIFT runs on images at most this large (px, longest side)
    min_registered: float = 0.5  # fewer registered images than this fraction: a DataError naming the cause
    single_camera: bool = True  # one set of intrinsics for every photo (one phone, one zoom)
    progress: bool = True


def _gather_video(video: Path, out: Path, opts: ProcessOptions) -> list[str]:
    n = count_frames(video)
    with tqdm(total=n, desc="reading video", unit="frame", disable=not opts.progress) as bar:
        picked = pick_frames(video, opts.frames, n, bar)
    names = []
    for idx, frame in picked:
        name = f"frame_{idx:06d}.png"
        Image.fromarray(frame).save(out / name)
        names.append(name)
    return names


def _common_size(sizes: list[tuple[int, int]], names: list[str]) -> tuple[int, int]:
    """The size most photos have once the minority orientation is turned to the majority's."""
    (w, h), _ = Counter(sizes).most_common(1)[0]
    for size, name in zip(sizes, names):
        if size not in ((w, h), (h, w)) and abs(size[0] / size[1] - w / h) > 0.01:
            raise DataError(
                f"{name} is {size[0]}x{size[1]} but most photos are {w}x{h}: photos of "
                f"another aspect ratio (another camera, a crop) cannot share one camera; remove them"
            )
    return w, h


def _gather_photos(folder: Path, out: Path, opts: ProcessOptions) -> list[str]:
    files = list_photos(folder)
    if not files:
        raise DataError(f"{folder}: no photos (.jpg .png .tif .heic ...) found")
    names = [f.stem + (".jpg" if f.suffix.lower() in (".jpg", ".jpeg", ".heic", ".heif") else ".png") for f in files]
    if len(set(names)) != len(names):
        raise DataError(f"{folder}: two photos share a name up to the extension: rename them")
    w, h = _common_size([photo_size(f) for f in files], [f.name for f in files])  # headers only
    for f, name in tqdm(list(zip(files, names)), desc="writing images", unit="img", disable=not opts.progress):
        im = load_photo(f)  # one decoded photo at a time: 100 of 12 MP would hold 3.6 GB together
        if im.size == (h, w) and w != h:  # the other orientation: turn it (a camera roll of 90 degrees)
            im = im.transpose(Image.Transpose.ROTATE_90)
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.LANCZOS)
        im.save(out / name, quality=95)  # quality: JPEG only (PNG ignores it)
    return names


def write_downscaled(images: Path, root: Path, names: list[str], factors=DOWNSCALES, progress: bool = True) -> None:
    """``images_N/`` copies: the bottom/right remainder cropped, N x N blocks averaged, so they are
    ``(W // N, H // N)`` and the intrinsics scale by exactly 1/N (what ``data.downscale=N`` reads)."""
    for n in factors:
        (root / f"images_{n}").mkdir(exist_ok=True)
    for name in tqdm(names, desc="downscaled copies", unit="img", disable=not progress):
        with Image.open(images / name) as im:
            for n in factors:
                reduce_image(im, n).save(root / f"images_{n}" / name, quality=95)  # quality: JPEG only


def match_masks(mask_dir: Path, names: list[str]) -> list[Path]:
    """The user mask of each image: by file stem, else by sorted order when the folder holds exactly one mask
    per image (``000.png`` for ``000000.png``, as in DTU)."""
    masks = list_photos(mask_dir)
    found = {p.stem: p for p in masks}
    missing = [n for n in names if Path(n).stem not in found]
    if not missing:
        return [found[Path(n).stem] for n in names]
    if len(masks) == len(names):
        warnings.warn(
            f"{mask_dir}: mask names differ from the image names (e.g. {masks[0].name} for "
            f"{names[0]}); pairing them in sorted order",
            DataWarning,
            stacklevel=2,
        )
        return masks
    raise DataError(
        f"{mask_dir}: no mask for {len(missing)} image(s) (first: {missing[0]}); masks are matched by "
        f"file stem, or in sorted order when there is exactly one per image"
    )


def copy_masks(mask_dir: Path, root: Path, names: list[str], size: tuple[int, int]) -> Path:
    """User masks (any image format) -> ``masks/<image stem>.png``, 8-bit, image-sized; and binary COLMAP
    feature masks ``sfm_masks/<image name>.png``; returns the latter folder."""
    files = match_masks(mask_dir, sorted(names))
    found = dict(zip(sorted(names), files))
    sfm_masks = root / "sfm_masks"
    for folder in (root / "masks", sfm_masks):
        folder.mkdir(exist_ok=True)
    for n in names:
        img = load_photo(found[n]).convert("L")
        if img.size == (size[1], size[0]) and size[0] != size[1]:  # turned like its photo (_gather_photos)
            img = img.transpose(Image.Transpose.ROTATE_90)
        if img.size != size:
            img = img.resize(size, Image.Resampling.NEAREST)
        img.save(root / "masks" / (Path(n).stem + ".png"))
        Image.fromarray(((np.asarray(img) > 127) * 255).astype(np.uint8)).save(sfm_masks / (n + ".png"))
    return sfm_masks


def _auto_masks(root: Path, progress: bool, log) -> dict:
    """``masks/`` from the model just written (GrabCut seeded by its points; see ``automask``)."""

    t0 = time.perf_counter()
    masks, files, size, _ = dataset_auto_masks(root, "colmap", progress)
    # the contact sheet beside masks/, which holds one PNG per image only
    rep = write_masks(masks, files, size, root / "masks", overview_png=root / "masks_overview.png")
    for line in rep.lines():
        log(f"[process] auto masks: {line}")
    return {"coverage": rep.coverage, "seconds": time.perf_counter() - t0}


def process_capture(src: Path, root: Path, opts: ProcessOptions | None = None, log=print) -> dict:
    """Photos folder or video ``src`` -> the dataset folder ``root``; returns the report written beside it."""
    src, root, opts = Path(src), Path(root), opts or ProcessOptions()
    if not src.exists():
        raise DataError(f"input not found: {src}")
    from_video = src.is_file()
    if from_video and src.suffix.lower() not in VIDEO_EXTS:
        raise DataError(f"{src}: not a folder of photos nor a video ({', '.join(VIDEO_EXTS)})")
    images = root / "images"
    for old in ("images", "masks", "sfm_masks", *(f"images_{n}" for n in DOWNSCALES)):  # a previous run's
        shutil.rmtree(root / old, ignore_errors=True)
    (root / "masks_overview.png").unlink(missing_ok=True)
    images.mkdir(parents=True)
    t0 = time.perf_counter()
    names = _gather_video(src, images, opts) if from_video else _gather_photos(src, images, opts)
    gather_s = time.perf_counter() - t0
    with Image.open(images / names[0]) as im:
        size = im.size
    log(f"[process] {len(names)} images of {size[0]}x{size[1]} in {images}")
    user_masks = opts.masks and opts.masks != "auto"
    sfm_masks = copy_masks(Path(opts.masks), root, names, size) if user_masks else None
    matcher = pick_matcher(opts.matcher, len(names), from_video)
    rec, sfm = run_sfm(
        images,
        root,
        names,
        matcher,
        opts.single_camera,
        max_image_size=opts.max_image_size,
        min_registered=opts.min_registered,
        log=log,
        progress=opts.progress,
        mask_dir=sfm_masks,
    )
    model = root / "sparse" / "0"
    if model.exists():
        shutil.rmtree(model)
    model.mkdir(parents=True)
    rec.write(str(model))
    write_downscaled(images, root, names, progress=opts.progress)
    sfm.seconds = {"images": gather_s, **sfm.seconds}
    report = {"input": str(src), "video": from_video, "size": list(size), **sfm.to_dict()}
    if opts.masks == "auto":
        report["auto_masks"] = _auto_masks(root, opts.progress, log)
        sfm.seconds["auto masks"] = report["auto_masks"].pop("seconds")
        report["seconds"] = dict(sfm.seconds)
    (root / "process_report.json").write_text(json.dumps(report, indent=2))
    for line in sfm.lines():
        log(f"[process] {line}")
    if sfm.unregistered:
        log(
            f"[process] not registered (left out of training): {', '.join(sfm.unregistered[:10])}"
            + (" ..." if len(sfm.unregistered) > 10 else "")
        )
    return report
