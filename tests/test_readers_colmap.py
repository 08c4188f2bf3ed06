"""The COLMAP reader: text and binary models written by hand, every camera model, distortion and round trips."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reader_fakes import EYES, look_at_cv

from lumisurf.data.cameras import distort_points
from lumisurf.data.readers import detect_format, load_scene
from lumisurf.errors import DataError

COLMAP_CAMS = {
    1: ("PINHOLE", [20.0, 22.0, 8.0, 6.0]),
    2: ("SIMPLE_RADIAL", [21.0, 7.5, 6.5, 0.05]),
    3: ("OPENCV", [20.0, 19.0, 8.2, 5.9, 0.03, -0.02, 0.001, -0.002]),
}
MODEL_ID = {"PINHOLE": 1, "SIMPLE_RADIAL": 2, "OPENCV": 4, "FULL_OPENCV": 6}


def _rot_to_q(R):
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    return np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])


def _colmap_images():
    out = []
    for i, e in enumerate(EYES[:3]):
        w2c = np.linalg.inv(look_at_cv(e))
        out.append((i + 1, _rot_to_q(w2c[:3, :3]), w2c[:3, 3], i + 1, f"im{i}.png"))
    return out


def _write_colmap(root: Path, binary: bool, cams=COLMAP_CAMS):
    d = root / "sparse" / "0"
    d.mkdir(parents=True)
    (root / "images").mkdir()
    for _, _, _, _, name in _colmap_images():
        Image.fromarray(np.full((12, 16, 3), 77, np.uint8)).save(root / "images" / name)
    if binary:
        cb = struct.pack("<Q", len(cams))
        for cid, (model, p) in cams.items():
            cb += struct.pack("<iiQQ", cid, MODEL_ID[model], 16, 12) + struct.pack(f"<{len(p)}d", *p)
        ib = struct.pack("<Q", 3)
        for iid, q, t, cid, name in _colmap_images():
            pts = [(1.0, 2.0, 5)] if iid == 2 else []
            ib += struct.pack("<i7di", iid, *q, *t, cid) + name.encode() + b"\x00" + struct.pack("<Q", len(pts))
            ib += b"".join(struct.pack("<ddq", *p) for p in pts)
        (d / "cameras.bin").write_bytes(cb)
        (d / "images.bin").write_bytes(ib)
    else:
        lines = ["# Camera list"] + [f"{cid} {m} 16 12 " + " ".join(map(repr, p)) for cid, (m, p) in cams.items()]
        (d / "cameras.txt").write_text("\n".join(lines) + "\n")
        il = ["# Image list", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
        for iid, q, t, cid, name in _colmap_images():
            il += [
                f"{iid} " + " ".join(repr(float(v)) for v in [*q, *t]) + f" {cid} {name}",
                "1.0 2.0 5" if iid == 2 else "",
            ]
        (d / "images.txt").write_text("\n".join(il) + "\n")
    return root


def test_colmap_txt_bin_round_trip(tmp_path):
    a = load_scene(_write_colmap(tmp_path / "txt", False), holdout_every=0).splits["train"]
    b = load_scene(_write_colmap(tmp_path / "bin", True), holdout_every=0).splits["train"]
    assert detect_format(tmp_path / "bin") == "colmap" and len(a) == 3
    for k in ("c2w", "fx", "fy", "cx", "cy", "distortion"):
        assert torch.allclose(getattr(a.cameras, k), getattr(b.cameras, k), atol=1e-6), k
    assert torch.allclose(a.cameras.distortion[1], torch.tensor([0.05, 0, 0, 0]))
    X = torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)
    for i, (_iid, _q, _t, cid, _name) in enumerate(_colmap_images()):
        model, p = COLMAP_CAMS[cid]
        fx, fy, cx, cy = (p[0], p[1], p[2], p[3]) if model != "SIMPLE_RADIAL" else (p[0], p[0], p[1], p[2])
        w2c = np.linalg.inv(look_at_cv(EYES[i]))
        xc = w2c[:3, :3] @ X.numpy() + w2c[:3, 3]
        uv, z = a.cameras.project(X.float()[None], i)  # pinhole part, no pixel shift
        assert np.allclose(uv[0].numpy(), [fx * xc[0] / xc[2] + cx, fy * xc[1] / xc[2] + cy], atol=1e-3)
        # the ray through the distorted pixel of X passes through X
        k = a.cameras.distortion[i].double()
        xd, yd = distort_points(torch.tensor(xc[0] / xc[2]), torch.tensor(xc[1] / xc[2]), k)
        o, d = a.cameras.rays(torch.tensor([i]), (fx * xd + cx).float()[None], (fy * yd + cy).float()[None])
        v = X.float() - o[0]
        assert torch.linalg.cross(v, d[0]).norm() < 1e-4 * v.norm()


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_unsupported_model(tmp_path, binary):
    cams = {**COLMAP_CAMS, 2: ("FULL_OPENCV", [20.0, 20.0, 8.0, 6.0] + [0.0] * 8)}
    with pytest.raises(DataError, match="FULL_OPENCV"):
        load_scene(_write_colmap(tmp_path, binary, cams))
