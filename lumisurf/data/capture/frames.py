"""Photos and video frames in: EXIF orientation, optional HEIC, sharpness, and frames picked from a video.

Everything here returns or writes 8-bit RGB; nothing is resized (downscaled copies are written later by
:mod:`lumisurf.data.capture.process`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lumisurf.errors import DataError

PHOTO_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".heic", ".heif", ".webp", ".bmp")
VIDEO_EXTS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")


def _heif_opener() -> None:
    """Register pillow-heif's HEIC reader when it is installed (phones write HEIC)."""
    try:
        import pillow_heif  # noqa: F401  (optional)
    except ImportError:
        raise DataError(
            "HEIC/HEIF photos need pillow-heif: pip install pillow-heif (or convert them to JPEG first)"
        ) from None
    pillow_heif.register_heif_opener()


def load_photo(path: Path) -> Image.Image:
    """An RGB image upright as the camera was held (EXIF orientation applied)."""
    path = Path(path)
    if path.suffix.lower() in (".heic", ".heif"):
        _heif_opener()
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey (TIFF): to 8 bits
                im = Image.fromarray((np.asarray(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8))
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read photo {path}: {e}") from None


def photo_size(path: Path) -> tuple[int, int]:
    """(width, height) of a photo upright (EXIF orientations 5-8 swap them), without decoding its pixels."""
    path = Path(path)
    if path.suffix.lower() in (".heic", ".heif"):
        _heif_opener()
    try:
        with Image.open(path) as im:
            w, h = im.size
            return (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read photo {path}: {e}") from None


def list_photos(folder: Path) -> list[Path]:
    """Photo files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in PHOTO_EXTS)


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image ([H, W, 3] uint8): low means blurry."""
    g = rgb.astype(np.float32).mean(-1)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def imageio_ffmpeg(purpose: str = "video input"):
    """The optional ``imageio_ffmpeg`` module (extra ``capture``), or one DataError line saying how to get it."""
    try:
        import imageio_ffmpeg as module
    except ImportError:
        raise DataError(f'{purpose} needs imageio-ffmpeg: pip install -e ".[capture]"') from None
    return module


def _video_reader(path: Path):
    ffmpeg = imageio_ffmpeg()
    try:
        reader = ffmpeg.read_frames(str(path))
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as e:
        raise DataError(f"cannot read video {path}: {e}") from None
    return reader, meta


def count_frames(path: Path) -> int:
    """Number of frames of a video (decoded once: container counts are often wrong for phone videos)."""
    ffmpeg = imageio_ffmpeg()
    try:
        return int(ffmpeg.count_frames_and_secs(str(path))[0])
    except (OSError, RuntimeError) as e:
        raise DataError(f"cannot read video {path}: {e}") from None


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """Frames of a video as [H, W, 3] uint8, in order."""
    reader, meta = _video_reader(path)
    w, h = meta["size"]
    for raw in reader:
        yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def pick_frames(path: Path, target: int, n: int | None = None, progress=None) -> list[tuple[int, np.ndarray]]:
    """``target`` frames spread over the video: the sharpest frame (variance of the Laplacian) of each of
    ``target`` equal stretches, so a blurry frame is dropped for a sharper neighbour. ``n``: the frame count
    when already known. Returns (index, frame) in order."""
    n = count_frames(path) if n is None else n
    if n == 0:
        raise DataError(f"{path}: the video has no frames")
    target = max(1, min(target, n))
    edges = np.linspace(0, n, target + 1)
    best: dict[int, tuple[float, int, np.ndarray]] = {}
    for i, frame in enumerate(video_frames(path)):
        seg = min(int(np.searchsorted(edges, i, side="right")) - 1, target - 1)
        score = sharpness(frame[::2, ::2])
        if seg not in best or score > best[seg][0]:
            best[seg] = (score, i, frame.copy())
        if progress is not None:
            progress.update(1)
    return [(i, frame) for _, (_, i, frame) in sorted(best.items())]
