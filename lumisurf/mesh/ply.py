"""Binary little-endian PLY writer for named per-vertex columns (points, or a mesh with triangle faces)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

_PLY_TYPE = {np.dtype(np.uint8): "uchar", np.dtype(np.int32): "int", np.dtype(np.float32): "float"}


def write_ply(
    path: Path, columns: Sequence[tuple[str, np.ndarray]], faces: np.ndarray | None = None, comments: Sequence[str] = ()
) -> Path:
    """Write ``columns`` (name, 1-D uint8 / int32 / float32 array of one length) as the vertex element and,
    if given, ``faces`` ``[F, 3]`` as ``vertex_indices`` lists."""
    n = len(columns[0][1])
    dtype = np.dtype([(name, col.dtype.newbyteorder("<")) for name, col in columns])
    data = np.empty(n, dtype=dtype)
    for name, col in columns:
        data[name] = col
    header = ["ply", "format binary_little_endian 1.0"] + [f"comment {c}" for c in comments]
    header += [f"element vertex {n}"] + [f"property {_PLY_TYPE[col.dtype]} {name}" for name, col in columns]
    body = data.tobytes()
    if faces is not None:
        face_data = np.empty(len(faces), dtype=np.dtype([("n", "u1"), ("idx", "<i4", (3,))]))
        face_data["n"], face_data["idx"] = 3, faces
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        body += face_data.tobytes()
    Path(path).write_bytes(("\n".join(header + ["end_header"]) + "\n").encode("ascii") + body)
    return Path(path)
