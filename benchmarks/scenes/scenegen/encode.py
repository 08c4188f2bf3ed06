"""File encodings of one view, as in the shared Mitsuba scenes (see /work/shared/data/README.md):

* ``r_i.png``            RGBA 8-bit, RGB sRGB-encoded (clipped at 1), straight alpha = pixel coverage,
                         RGB = 0 where alpha = 0
* ``r_i_albedo.png``     RGB 8-bit, sRGB-encoded linear base color, 0 = background
* ``r_i_roughness.png``  L 8-bit, round(255 * roughness); ``r_i_metallic.png`` likewise
* ``r_i_matid.png``      L 8-bit material id, 0 = background (two-material scenes)
* ``r_i_normal.png``     RGB 16-bit, round((n + 1) / 2 * 65535) of the world-space unit shading normal; 0 = background
* ``r_i_depth.npy``      float16 [H, W] z-depth along the camera's -z axis, 0 = background
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def rgba_u8(premultiplied: np.ndarray) -> np.ndarray:
    """Mitsuba's RGBA film (RGB premultiplied by coverage) -> straight-alpha sRGB RGBA uint8."""
    alpha = np.clip(premultiplied[..., 3], 0.0, 1.0)
    rgb = premultiplied[..., :3] / np.maximum(alpha, 1e-8)[..., None]
    out = np.concatenate([to_u8(srgb_encode(rgb)), to_u8(alpha)[..., None]], -1)
    out[out[..., 3] == 0] = 0
    return out


def write_png16(path: Path, arr: np.ndarray) -> None:
    """Non-interlaced 16-bit grey/RGB/RGBA PNG (Pillow cannot write 16-bit RGB)."""
    arr = np.asarray(arr, np.uint16)
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    rows = arr.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], 1).tobytes()  # filter type 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    )


def normal_u16(n: np.ndarray, hit: np.ndarray) -> np.ndarray:
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    v = np.round((np.clip(n, -1.0, 1.0) + 1.0) * 0.5 * 65535.0).astype(np.uint16)
    v[~hit] = 0
    return v


def save_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path)


def write_rgba(path: Path, premultiplied: np.ndarray) -> None:
    save_png(path, rgba_u8(premultiplied))


def write_gt(stem: Path, gt: dict, write_matid: bool) -> None:
    """The GT maps of one view from ``gt`` (see ``render.gt_maps``) next to ``stem`` (``.../r_i``)."""
    hit = gt["hit"]
    albedo = to_u8(srgb_encode(gt["albedo"]))
    albedo[~hit] = 0
    save_png(stem.with_name(stem.name + "_albedo.png"), albedo)
    for key in ("roughness", "metallic"):
        save_png(stem.with_name(f"{stem.name}_{key}.png"), np.where(hit, to_u8(gt[key]), 0).astype(np.uint8))
    if write_matid:
        save_png(stem.with_name(stem.name + "_matid.png"), np.where(hit, gt["matid"], 0).astype(np.uint8))
    write_png16(stem.with_name(stem.name + "_normal.png"), normal_u16(gt["normal"], hit))
    np.save(stem.with_name(stem.name + "_depth.npy"), np.where(hit, gt["depth"], 0.0).astype(np.float16))


def view_files(split: str, i: int, gt: bool, matid: bool) -> list[str]:
    """Relative paths written for view i of a split."""
    names = [f"r_{i}.png"]
    if gt:
        names += [f"r_{i}_{k}.png" for k in ("albedo", "roughness", "metallic", "normal")] + [f"r_{i}_depth.npy"]
        if matid:
            names.append(f"r_{i}_matid.png")
    return [f"{split}/{n}" for n in names]
