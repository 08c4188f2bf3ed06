"""Images held as uint8, `data.downscale=N` for every format (intrinsics scaled), COLMAP images_N/ and masks/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reader_fakes import fake_blender

from lumisurf.data.capture.process import write_downscaled
from lumisurf.data.images import as_float
from lumisurf.data.readers import load_scene
from lumisurf.data.readers.colmap import read_colmap


def _look_at_w2c(eye) -> tuple[list[float], list[float]]:
    """COLMAP (qw, qx, qy, qz) and t of an OpenCV camera at ``eye`` looking at the origin, z up."""
    z = -np.asarray(eye, float) / np.linalg.norm(eye)
    x = np.cross(z, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    r_c2w = np.stack([x, np.cross(z, x), z], 1)
    r = r_c2w.T
    w = math.sqrt(max(1e-12, 1 + np.trace(r))) / 2
    q = [w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)]
    return q, list(-r @ np.asarray(eye, float))


def _colmap(root: Path, w=41, h=31, n=3, model="OPENCV", masks=False) -> Path:
    """A COLMAP text model of ``n`` cameras (odd sizes: the remainder is cropped) with random photos."""
    (root / "sparse" / "0").mkdir(parents=True)
    (root / "images").mkdir()
    params = "30 32 20.5 15.5 0.05 -0.01 0.001 0.002" if model == "OPENCV" else "30 32 20.5 15.5"
    (root / "sparse" / "0" / "cameras.txt").write_text(f"1 {model} {w} {h} {params}\n")
    rng = np.random.default_rng(0)
    lines = []
    for k in range(n):
        q, t = _look_at_w2c([3 * math.cos(k), 3 * math.sin(k), 1.0])
        lines.append(f"{k + 1} {' '.join(map(str, q))} {' '.join(map(str, t))} 1 v{k}.png\n\n")
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(root / "images" / f"v{k}.png")
        if masks:
            (root / "masks").mkdir(exist_ok=True)
            m = np.zeros((h, w), np.uint8)
            m[5:20, 8:30] = 255
            Image.fromarray(m).save(root / "masks" / f"v{k}.png")
    (root / "sparse" / "0" / "images.txt").write_text("".join(lines))
    return root


def test_images_are_uint8_and_convert_per_view(tmp_path):
    scene = read_colmap(_colmap(tmp_path), holdout_every=0)
    img = scene.split("train").images
    assert img.dtype == torch.uint8 and img.shape == (3, 31, 41, 3)
    raw = np.array(Image.open(tmp_path / "images" / "v0.png"))
    assert torch.equal(img[0], torch.from_numpy(raw))
    assert torch.allclose(as_float(img[0]), torch.from_numpy(raw).float() / 255)


def test_downscale_2_gives_the_same_rays_and_block_means(tmp_path):
    root = _colmap(tmp_path)
    full = load_scene(root, holdout_every=0).split("train")
    half = load_scene(root, holdout_every=0, downscale=2).split("train")
    assert half.images.shape == (3, 15, 20, 3)  # 31 x 41 cropped to 30 x 40, then halved
    block = full.images[:, :30, :40].float().reshape(3, 15, 2, 20, 2, 3).mean((2, 4))
    assert (half.images.float() - block).abs().max() <= 0.5  # rounded block means
    cam = torch.zeros(15 * 20, dtype=torch.long)
    rows, cols = torch.meshgrid(torch.arange(15.0), torch.arange(20.0), indexing="ij")
    o2, d2 = half.cameras.rays(cam, cols.reshape(-1) + 0.5, rows.reshape(-1) + 0.5)
    o1, d1 = full.cameras.rays(cam, 2 * cols.reshape(-1) + 1.0, 2 * rows.reshape(-1) + 1.0)  # same spot
    angle = torch.acos((d1 * d2).sum(-1).clamp(-1, 1))
    assert torch.allclose(o1, o2) and float(angle.max()) < 0.5 / 30.0  # within half a full-res pixel


def test_colmap_reads_images_n_and_masks(tmp_path):
    root = _colmap(tmp_path, w=40, h=30, model="PINHOLE")
    write_downscaled(root / "images", root, [f"v{k}.png" for k in range(3)], progress=False)
    (root / "images_2" / "v1.png").unlink()  # proof that images_2/ is what gets read
    with pytest.raises(Exception, match="v1.png"):
        load_scene(root, holdout_every=0, downscale=2)
    write_downscaled(root / "images", root, [f"v{k}.png" for k in range(3)], progress=False)
    half = load_scene(root, holdout_every=0, downscale=2).split("train")
    assert half.images.shape == (3, 15, 20, 3) and float(half.cameras.fx[0]) == 15.0
    assert half.files[0].parent.name == "images_2"
    masked = read_colmap(_colmap(tmp_path / "m", masks=True), holdout_every=0).split("train")
    assert masked.masks is not None and float(masked.masks[0].sum()) == 15 * 22


def test_blender_gt_maps_follow_the_downscale(tmp_path):
    root = fake_blender(tmp_path)
    np.save(root / "train" / "r_0_depth.npy", np.full((12, 16), 2.0, np.float32))
    sc = load_scene(root, downscale=2).split("train")
    assert sc.images.shape == (3, 6, 8, 3) and sc.depths.shape == (3, 6, 8)
    assert float(sc.depths[0].min()) == 2.0 and float(sc.depths[1].max()) == 0.0
    assert float(sc.masks[0].sum()) == pytest.approx(48 / 4, rel=0.01)  # coverage kept by (8-bit) block means
    assert json.loads((root / "transforms_train.json").read_text())["camera_angle_x"] == 0.7
    assert float(sc.cameras.fx[0]) == pytest.approx(4 / math.tan(0.35))


def test_ngp_mask_path_and_masks_folder(tmp_path):
    from lumisurf.errors import DataError

    eye = np.eye(4)
    frames = []
    for k in range(2):
        Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(tmp_path / f"f{k}.png")
        m = np.zeros((12, 16), np.uint8)
        m[2:6, 3:11] = 255
        (tmp_path / "seg").mkdir(exist_ok=True)
        Image.fromarray(m).save(tmp_path / "seg" / f"f{k}.png")
        c2w = eye.copy()
        c2w[:3, 3] = [0, 0, 3 + k]
        frames.append({"file_path": f"f{k}.png", "mask_path": f"seg/f{k}.png", "transform_matrix": c2w.tolist()})
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 20, "fl_y": 20, "frames": frames}))
    sp = load_scene(tmp_path, holdout_every=0).split("train")
    assert sp.masks is not None and float(sp.masks[0].sum()) == 32
    half = load_scene(tmp_path, holdout_every=0, downscale=2).split("train")
    assert half.masks.shape == (2, 6, 8) and float(half.masks[0].sum()) == 8
    del frames[1]["mask_path"]
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 20, "fl_y": 20, "frames": frames}))
    with pytest.raises(DataError, match="lack 'mask_path'"):
        load_scene(tmp_path, holdout_every=0)
