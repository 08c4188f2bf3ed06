"""Camera paths for videos (``lumisurf render RUN --path orbit|spiral|interp|FILE.json``).

Paths live in the frame of the cameras they are made from (the normalised frame of a run: object in the unit
sphere) and use the OpenCV convention of :mod:`lumisurf.data.cameras`. Every path borrows the intrinsics and
image size of the dataset's first camera (distortion dropped: a video is a clean pinhole view).

A path file is JSON ``{"frame": "world" | "normalized", "cameras": [[4x4 c2w], ...]}`` with OpenCV camera-to-
world key frames; ``lumisurf render --path FILE.json`` interpolates through them (``world``: the dataset's
frame, moved into the run's normalised frame).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras
from lumisurf.errors import DataError

PATHS = ("orbit", "spiral", "interp")


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV camera-to-world [4, 4] at ``eye`` looking at ``target`` with ``up`` roughly the image's up."""
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)  # image x to the right, y = z x x down (against up)
    if x.norm() < 1e-6:  # looking along up: any right vector
        x = torch.linalg.cross(z, torch.tensor([1.0, 0.0, 0.0], dtype=z.dtype))
    x = x / x.norm()
    c2w = torch.eye(4, dtype=eye.dtype)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, torch.linalg.cross(z, x), z, eye
    return c2w


def rig_up(c2w: Tensor) -> Tensor:
    """The mean 'up' of a camera set [n, 4, 4] (minus the mean image y axis), unit [3]."""
    up = -c2w[:, :3, 1].mean(0)
    return up / up.norm().clamp_min(1e-8)


def _ring(c2w: Tensor, n: int, wobble: float) -> Tensor:
    """n cameras [n, 4, 4] on a circle about the rig's up axis through the origin, at the cameras' median
    distance and elevation, looking at the origin; ``wobble``: elevation swing (radians) of a spiral."""
    c2w = c2w.double()
    up = rig_up(c2w)
    centres = c2w[:, :3, 3]
    radius = float(centres.norm(dim=-1).median())
    elev = float(torch.asin((centres @ up / centres.norm(dim=-1)).clamp(-0.99, 0.99)).median())
    e1 = centres[0] - (centres[0] @ up) * up
    e1 = e1 / e1.norm().clamp_min(1e-8) if e1.norm() > 1e-6 else look_at(torch.zeros(3), up, up)[:3, 0]
    e2 = torch.linalg.cross(up, e1)
    out = []
    for k in range(n):
        a = 2 * math.pi * k / n
        el = elev + wobble * math.sin(2 * a)
        eye = radius * (math.cos(el) * (math.cos(a) * e1 + math.sin(a) * e2) + math.sin(el) * up)
        out.append(look_at(eye, torch.zeros(3, dtype=eye.dtype), up))
    return torch.stack(out).float()


def _rotation_to_quat(r: Tensor) -> Tensor:
    """Unit quaternion (w, x, y, z) [4] of a rotation [3, 3] (float64)."""
    m = r.double()
    w = torch.sqrt((1 + m.trace()).clamp_min(1e-12)) / 2
    if w > 1e-3:
        return torch.stack(
            [w, (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), (m[1, 0] - m[0, 1]) / (4 * w)]
        )
    i = int(torch.argmax(torch.diagonal(m)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = torch.sqrt((1 + m[i, i] - m[j, j] - m[k, k]).clamp_min(1e-12)) * 2
    q = torch.zeros(4, dtype=torch.float64)
    q[0], q[1 + i] = (m[k, j] - m[j, k]) / s, s / 4
    q[1 + j], q[1 + k] = (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
    return q / q.norm()


def _quat_to_rotation(q: Tensor) -> Tensor:
    w, x, y, z = q / q.norm()
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
        ]
    )


def _slerp(q0: Tensor, q1: Tensor, u: float) -> Tensor:
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + u * (q1 - q0)
        return q / q.norm()
    th = math.acos(dot)
    return (math.sin((1 - u) * th) * q0 + math.sin(u * th) * q1) / math.sin(th)


def interpolate(keys: Tensor, n: int) -> Tensor:
    """n cameras [n, 4, 4] through key poses [k, 4, 4]: centres piecewise linear, rotations slerped, frame
    ``round(i * (n - 1) / (k - 1))`` equal to key i (the path passes exactly through its keys)."""
    k = keys.shape[0]
    if k < 2 or n < 2:
        raise DataError("an interpolated path needs at least 2 key cameras and 2 frames")
    keys = keys.double()
    quats = [_rotation_to_quat(keys[i, :3, :3]) for i in range(k)]
    anchors = [round(i * (n - 1) / (k - 1)) for i in range(k)]
    out = []
    for f in range(n):
        seg = min(max(i for i in range(k - 1) if anchors[i] <= f), k - 2)
        u = (f - anchors[seg]) / max(anchors[seg + 1] - anchors[seg], 1)
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, :3] = _quat_to_rotation(_slerp(quats[seg], quats[seg + 1], u))
        c2w[:3, 3] = (1 - u) * keys[seg, :3, 3] + u * keys[seg + 1, :3, 3]
        out.append(c2w)
    return torch.stack(out).float()


def read_path_file(path: Path, normalization=None) -> Tensor:
    """Key poses [k, 4, 4] of a path JSON file, in the normalised frame when ``normalization`` is given."""
    try:
        spec = json.loads(Path(path).read_text())
        keys = torch.tensor(spec["cameras"], dtype=torch.float64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"cannot read camera path {path}: {e} (expected {{'frame': 'world', 'cameras': [[4x4], ...]}})"
        ) from None
    if keys.ndim != 3 or keys.shape[1:] != (4, 4):
        raise DataError(f"{path}: 'cameras' must be a list of 4x4 matrices, got shape {list(keys.shape)}")
    if spec.get("frame", "world") == "world" and normalization is not None:
        keys[:, :3, 3] = (
            keys[:, :3, 3] - torch.tensor(normalization.center, dtype=torch.float64)
        ) / normalization.scale
    return keys.float()


def make_path(kind: str, cams: Cameras, n: int, normalization=None) -> Cameras:
    """``n`` path cameras from a dataset's cameras (``kind``: orbit | spiral | interp | a JSON file); ``interp``
    runs through the dataset's own cameras (up to 8 evenly spaced ones)."""
    if kind == "orbit":
        c2w = _ring(cams.c2w, n, 0.0)
    elif kind == "spiral":
        c2w = _ring(cams.c2w, n, math.radians(15.0))
    elif kind == "interp":
        keys = cams.c2w[torch.linspace(0, len(cams) - 1, min(8, len(cams))).round().long()]
        c2w = interpolate(keys, n)
    elif kind.endswith(".json"):
        c2w = interpolate(read_path_file(Path(kind), normalization), n)
    else:
        raise DataError(f"unknown camera path '{kind}': choose {', '.join(PATHS)} or a .json file")
    one = lambda v: v[:1].expand(n).clone()  # noqa: E731  (the first camera's intrinsics for every frame)
    return Cameras(
        c2w=c2w.to(cams.c2w),
        fx=one(cams.fx),
        fy=one(cams.fy),
        cx=one(cams.cx),
        cy=one(cams.cy),
        width=cams.width,
        height=cams.height,
    )
