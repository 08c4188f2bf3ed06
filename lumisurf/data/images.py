"""Image, mask and 16-bit normal-map loading with one clear :class:`DataError` per bad file.

All loaders return numpy arrays: color as float32 in [0, 1] (values as stored, i.e. sRGB for
ordinary photos/renders), alpha/masks as float32 [H, W]. Pillow decodes PNG/JPEG; 16-bit RGB PNGs
(which Pillow silently reduces to 8 bits) are decoded here with zlib.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lumisurf.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    return im


def as_float(t: torch.Tensor) -> torch.Tensor:
    """Color stored as uint8 (0..255, how readers keep photos: a quarter of float32's memory) -> float32 in
    [0, 1]; float tensors are returned unchanged. Convert per view or per batch, never a whole split."""
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t


def to_uint8_array(rgb: np.ndarray) -> np.ndarray:
    """float [0, 1] color -> uint8 (exact for 8-bit sources, which are k / 255)."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype in (np.uint16, np.int32) or arr.dtype.kind in "ui":
        return arr.astype(np.float32) / 65535.0
    return arr.astype(np.float32)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def load_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Color [H, W, 3] float32 in [0, 1] and alpha [H, W] (or None when the file has none).

    Color is returned as stored (straight, not premultiplied); grey images are expanded to RGB.
    """
    im = _open(path)
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        g = _to_float(np.asarray(im))
        return np.repeat(g[..., None], 3, axis=-1), None
    im = im.convert("RGBA" if has_alpha else "RGB")
    arr = _to_float(np.asarray(im))
    if has_alpha:
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])
    return arr, None


def load_image_uint8(path: Path, downscale: int = 1) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Color [h, w, 3] uint8 and alpha [h, w] float32 in [0, 1] (or None), decoded straight to 8 bits (no
    float copy of a 12 MP photo), at 1/``downscale``: the bottom/right remainder cropped, blocks averaged
    (Pillow's ``reduce``). Also returns the file's full size (width, height). 16-bit files go through floats."""
    im = _open(path)
    full = (int(im.size[0]), int(im.size[1]))
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        rgb, alpha = load_image(path)
        im = Image.fromarray(to_uint8_array(rgb))
    else:
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        im = im.convert("RGBA" if has_alpha else "RGB")
    if downscale > 1:
        if full[0] < downscale or full[1] < downscale:
            raise DataError(f"data.downscale={downscale} leaves no pixels of {path} ({full[0]}x{full[1]})")
        im = reduce_image(im, downscale)
    arr = np.asarray(im)
    if arr.shape[-1] == 4:
        return np.ascontiguousarray(arr[..., :3]), arr[..., 3].astype(np.float32) / 255.0, full
    return arr, None, full


def reduce_image(im: Image.Image, n: int) -> Image.Image:
    """``(W // n, H // n)``: the bottom/right remainder cropped, n x n blocks averaged, so pixel coordinates
    (corners at 0) scale by exactly 1/n."""
    return im.crop((0, 0, im.size[0] // n * n, im.size[1] // n * n)).reduce(n)


def load_mask(path: Path, threshold: int = 127) -> np.ndarray:
    """Binary mask [H, W] float32 (1 = object) from an 8-bit grey/RGB(A) image: value > threshold.

    Color masks are averaged over their RGB channels first. An all-zero mask is a DataError.
    """
    im = _open(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr, thr = np.asarray(im).astype(np.float64) / 257.0, float(threshold)
    elif im.mode == "L":
        arr, thr = np.asarray(im), threshold
    else:  # mean over RGB > threshold  <=>  sum > 3 * threshold
        rgb = np.asarray(im.convert("RGB"))
        arr, thr = rgb[..., 0].astype(np.uint16) + rgb[..., 1] + rgb[..., 2], 3 * threshold
    mask = (arr > thr).astype(np.float32)
    if not mask.any():
        raise DataError(f"mask {path} is empty (no pixel > {threshold})")
    return mask


def _png_chunks(data: bytes, path: Path):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise DataError(f"{path} is not a PNG file")
    i = 8
    while i + 8 <= len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        yield data[i + 4 : i + 8], data[i + 8 : i + 8 + n]
        i += 12 + n


def _unfilter(raw: np.ndarray, h: int, stride: int, bpp: int, path: Path) -> np.ndarray:
    """Undo PNG scanline filters; raw: [h * (stride + 1)] uint8 -> [h, stride] uint8."""
    rows = raw.reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for r in range(h):
        ftype, line = rows[r, 0], rows[r, 1:].astype(np.int64)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: running sum per byte position within a pixel
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) % 256
        elif ftype == 2:  # Up
            cur = (line + prev) % 256
        elif ftype in (3, 4):  # Average / Paeth: sequential along the row
            cur = np.zeros(stride, np.int64)
            for x in range(0, stride, bpp):
                a = cur[x - bpp : x] if x else np.zeros(bpp, np.int64)
                b = prev[x : x + bpp]
                if ftype == 3:
                    pred = (a + b) // 2
                else:
                    c = prev[x - bpp : x] if x else np.zeros(bpp, np.int64)
                    p = a + b - c
                    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
                    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
                cur[x : x + bpp] = (line[x : x + bpp] + pred) % 256
        else:
            raise DataError(f"{path}: corrupt PNG (filter type {ftype})")
        out[r] = cur
        prev = cur
    return out


def read_png16(path: Path) -> np.ndarray:
    """Decode a 16-bit grey/RGB/RGBA PNG into uint16 [H, W, C] (Pillow would truncate RGB to 8 bit)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    data = path.read_bytes()
    header, idat = None, []
    for kind, body in _png_chunks(data, path):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
    if header is None:
        raise DataError(f"{path}: PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 16 or channels is None or interlace:
        raise DataError(
            f"{path}: expected a non-interlaced 16-bit grey/RGB(A) PNG "
            f"(got bit depth {depth}, color type {ctype}, interlace {interlace})"
        )
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    except zlib.error as e:
        raise DataError(f"{path}: corrupt PNG data ({e})") from None
    stride = w * channels * 2
    if raw.size != h * (stride + 1):
        raise DataError(f"{path}: corrupt PNG (pixel data size {raw.size}, expected {h * (stride + 1)})")
    px = _unfilter(raw, h, stride, channels * 2, path)
    return px.view(">u2").astype(np.uint16).reshape(h, w, channels)


def load_normal_png16(path: Path) -> np.ndarray:
    """World-space normals [H, W, 3] float32 from a 16-bit PNG: n = v / 65535 * 2 - 1; (0,0,0) -> 0."""
    v = read_png16(path)
    if v.shape[-1] < 3:
        raise DataError(f"{path}: normal map needs 3 channels, got {v.shape[-1]}")
    v = v[..., :3]
    n = v.astype(np.float32) / 65535.0 * 2.0 - 1.0
    n[(v == 0).all(-1)] = 0.0
    return n
