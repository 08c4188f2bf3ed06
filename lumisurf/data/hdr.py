"""Radiance RGBE (.hdr / .pic) images: read and write linear float32 RGB.

Reads the text header (``#?RADIANCE`` / ``#?RGBE`` magic, ``FORMAT=32-bit_rle_rgbe``, other variables
ignored, including EXPOSURE, as most readers do), the resolution line in any of the 8 orientations
(result: row 0 = top, column 0 = left), and scanlines that are either new-style run-length encoded
(each channel separately) or flat (4 bytes per pixel). Old-style RLE (1,1,1,n repeat pixels) is not
interpreted. Decoding follows Radiance: value = (mantissa + 0.5) * 2^(exponent - 136), 0 if exponent 0.
Writes ``-Y H +X W`` with new-style RLE (flat when the width is outside [8, 32767]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lumisurf.errors import DataError

_MAGICS = (b"#?RADIANCE", b"#?RGBE")


def read_hdr(path: str | Path) -> np.ndarray:
    """[H, W, 3] float32 linear RGB from a Radiance RGBE file; DataError when unreadable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read HDR image {path}: {exc}") from exc
    pos, height, width, axes = _parse_header(data, path)
    rgbe = _decode_scanlines(data, pos, axes[0][1], axes[1][1], path)  # [slow, fast, 4]
    img = _rgbe_to_float(rgbe)
    return _to_top_left(img, axes)


def write_hdr(path: str | Path, img: np.ndarray) -> None:
    """Write [H, W, 3] (or [H, W]) linear non-negative values as RGBE with new-style RLE."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"write_hdr expects an [H, W, 3] image, got {img.shape}")
    height, width = img.shape[:2]
    rgbe = _float_to_rgbe(img)
    header = f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode("ascii")
    rle = 8 <= width <= 0x7FFF
    body = b"".join(_encode_scanline(row) if rle else row.tobytes() for row in rgbe)
    Path(path).write_bytes(header + body)


# ------------------------------------------------------------------ header
def _parse_header(data: bytes, path: Path) -> tuple[int, int, int, list[tuple[str, int]]]:
    """(offset of the pixel data, height, width, [(axis sign+name, size) slow first, fast second])."""
    if not data.startswith(_MAGICS):
        raise DataError(f"{path} is not a Radiance HDR file (no '#?RADIANCE' magic)")
    end = data.find(b"\n\n")
    if end < 0:
        raise DataError(f"{path}: truncated HDR header (no blank line before the resolution)")
    for line in data[:end].split(b"\n")[1:]:
        if line.startswith(b"FORMAT=") and line.strip() != b"FORMAT=32-bit_rle_rgbe":
            raise DataError(f"{path}: unsupported HDR pixel format {line.decode(errors='replace')!r}")
    res_end = data.find(b"\n", end + 2)
    if res_end < 0:
        raise DataError(f"{path}: truncated HDR header (no resolution line)")
    parts = data[end + 2 : res_end].decode("ascii", errors="replace").split()
    try:
        if (
            len(parts) != 4
            or {parts[0][1], parts[2][1]} != {"X", "Y"}
            or parts[0][0] not in "+-"
            or parts[2][0] not in "+-"
        ):
            raise ValueError
        axes = [(parts[0], int(parts[1])), (parts[2], int(parts[3]))]
    except (ValueError, IndexError):
        raise DataError(f"{path}: bad HDR resolution line {' '.join(parts)!r}") from None
    if axes[0][1] <= 0 or axes[1][1] <= 0:
        raise DataError(f"{path}: bad HDR image size {' '.join(parts)!r}")
    sizes = {name[1]: n for name, n in axes}
    return res_end + 1, sizes["Y"], sizes["X"], axes


def _to_top_left(img: np.ndarray, axes: list[tuple[str, int]]) -> np.ndarray:
    """Reorder [slow, fast, 3] so that rows go down (-Y) and columns go right (+X)."""
    if axes[0][0][1] == "X":  # column-major file: swap to rows first
        img = img.transpose(1, 0, 2)
        axes = axes[::-1]
    if axes[0][0] == "+Y":
        img = img[::-1]
    if axes[1][0] == "-X":
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


# ------------------------------------------------------------------ pixels
def _decode_scanlines(data: bytes, pos: int, n_lines: int, length: int, path: Path) -> np.ndarray:
    """[n_lines, length, 4] uint8 RGBE from flat or new-style RLE scanlines."""
    out = np.empty((n_lines, length, 4), dtype=np.uint8)
    for i in range(n_lines):
        head = data[pos : pos + 4]
        if len(head) < 4:
            raise DataError(f"{path}: truncated HDR pixel data (scanline {i} of {n_lines})")
        is_rle = 8 <= length <= 0x7FFF and head[0] == 2 and head[1] == 2 and not head[2] & 0x80
        if is_rle:
            if (head[2] << 8 | head[3]) != length:
                raise DataError(f"{path}: HDR scanline {i} length {head[2] << 8 | head[3]} != {length}")
            pos = _decode_rle_line(data, pos + 4, length, out[i], path)
        else:
            n = 4 * length
            if pos + n > len(data):
                raise DataError(f"{path}: truncated HDR pixel data (scanline {i} of {n_lines})")
            out[i] = np.frombuffer(data, np.uint8, n, pos).reshape(length, 4)
            pos += n
    return out


def _decode_rle_line(data: bytes, pos: int, length: int, out: np.ndarray, path: Path) -> int:
    """Decode the 4 run-length encoded channels of one scanline into out [length, 4]; new offset."""
    size = len(data)
    for c in range(4):
        row = bytearray(length)
        x = 0
        while x < length:
            if pos >= size:
                raise DataError(f"{path}: truncated HDR pixel data (inside an RLE scanline)")
            count = data[pos]
            if count > 128:  # a run of one byte
                count -= 128
                if x + count > length or pos + 1 >= size:
                    raise DataError(f"{path}: corrupt HDR RLE run (overflows the scanline)")
                row[x : x + count] = data[pos + 1 : pos + 2] * count
                pos += 2
            else:  # count literal bytes
                if count == 0 or x + count > length or pos + 1 + count > size:
                    raise DataError(f"{path}: corrupt or truncated HDR RLE data")
                row[x : x + count] = data[pos + 1 : pos + 1 + count]
                pos += 1 + count
            x += count
        out[:, c] = np.frombuffer(bytes(row), np.uint8)
    return pos


def _encode_scanline(row: np.ndarray) -> bytes:
    """New-style RLE of one [W, 4] uint8 scanline: runs of >= 4 equal bytes, literals elsewhere."""
    width = row.shape[0]
    chunks = [bytes([2, 2, width >> 8, width & 0xFF])]
    for c in range(4):
        chan = np.ascontiguousarray(row[:, c])
        starts = np.flatnonzero(np.r_[True, chan[1:] != chan[:-1]])
        lengths = np.diff(np.r_[starts, width])
        x = 0
        for s, n in zip(starts[lengths >= 4].tolist(), lengths[lengths >= 4].tolist()):
            _literals(chan, x, s, chunks)
            value = int(chan[s])
            for k in range(0, n, 127):
                chunks.append(bytes([128 + min(127, n - k), value]))
            x = s + n
        _literals(chan, x, width, chunks)
    return b"".join(chunks)


def _literals(chan: np.ndarray, start: int, stop: int, chunks: list[bytes]) -> None:
    for k in range(start, stop, 128):
        piece = chan[k : min(k + 128, stop)]
        chunks.append(bytes([len(piece)]) + piece.tobytes())


def _rgbe_to_float(rgbe: np.ndarray) -> np.ndarray:
    """[..., 4] uint8 -> [..., 3] float32."""
    e = rgbe[..., 3].astype(np.int32)
    scale = np.where(e > 0, np.ldexp(1.0, e - 136), 0.0).astype(np.float32)
    return (rgbe[..., :3].astype(np.float32) + 0.5) * scale[..., None]


def _float_to_rgbe(img: np.ndarray) -> np.ndarray:
    """[..., 3] float -> [..., 4] uint8 (negative and non-finite values become 0)."""
    img = np.nan_to_num(np.maximum(img.astype(np.float64), 0.0), nan=0.0, posinf=0.0)
    peak = img.max(-1)
    mant, exp = np.frexp(peak)  # peak = mant * 2^exp, mant in [0.5, 1)
    ok = (peak > 1e-32) & (exp + 128 > 0)
    exp = np.minimum(exp, 127)
    scale = np.where(ok, np.ldexp(1.0, 8 - exp), 0.0)  # 256 / 2^exp
    out = np.zeros(img.shape[:-1] + (4,), dtype=np.uint8)
    out[..., :3] = np.clip(np.floor(img * scale[..., None]), 0, 255).astype(np.uint8)
    out[..., 3] = np.where(ok, exp + 128, 0).astype(np.uint8)
    return out
