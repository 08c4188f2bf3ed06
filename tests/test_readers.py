"""Dataset readers on the real shared scenes (skipped when absent) and their unit pieces; the fakes of every
format are in test_readers_fakes.py, COLMAP in test_readers_colmap.py."""

from __future__ import annotations

import functools
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, shared_dataset

from lumisurf.data.cameras import Cameras, distort_points
from lumisurf.data.images import load_normal_png16, read_png16
from lumisurf.data.readers import READERS, load_scene
from lumisurf.data.readers.common import even_subset, holdout_split
from lumisurf.data.readers.neus import decompose_projection

DATA = SHARED_DATA
BLENDER = {
    "lego": (80, 20, 0),
    "glossy_bunny": (64, 16, 16),
    "glossy_spot": (64, 16, 16),
    "two_materials": (64, 16, 16),
}


@functools.cache
def _scene(name: str):
    return load_scene(shared_dataset(name))


def _all_views(scene, splits=("train", "test")):
    """Concatenated cameras (float64) and masks of the given splits."""
    sp = [scene.splits[s] for s in splits if s in scene.splits]
    c2w = torch.cat([s.cameras.c2w for s in sp]).double()
    intr = [torch.cat([getattr(s.cameras, k) for s in sp]).double() for k in ("fx", "fy", "cx", "cy")]
    cams = Cameras(c2w, *intr, sp[0].cameras.width, sp[0].cameras.height)
    masks = None if sp[0].masks is None else torch.cat([s.masks for s in sp])
    return cams, masks


def _axes_point(cams: Cameras) -> torch.Tensor:
    """Least-squares point closest to all optical axes (OpenCV +z)."""
    o, d = cams.c2w[:, :3, 3], cams.c2w[:, :3, 2]
    proj = torch.eye(3, dtype=o.dtype) - d[:, :, None] * d[:, None, :]
    return torch.linalg.solve(proj.sum(0), (proj @ o[:, :, None]).sum(0))[:, 0]


def _hits(cams: Cameras, point: torch.Tensor, masks=None) -> int:
    """Views where ``point`` projects in front, inside the image (and inside mask > 0.5)."""
    n = 0
    for i in range(len(cams)):
        uv, z = cams.project(point[None], i)
        col, row = int(math.floor(uv[0, 0])), int(math.floor(uv[0, 1]))
        inside = z[0] > 0 and 0 <= col < cams.width and 0 <= row < cams.height
        n += bool(inside and (masks is None or masks[i, row, col] > 0.5))
    return n


def _assert_rigid(c2w: torch.Tensor):
    c2w = c2w.double()
    rot = c2w[:, :3, :3]
    assert torch.isfinite(c2w).all()
    assert (rot.transpose(1, 2) @ rot - torch.eye(3, dtype=rot.dtype)).abs().max() < 1e-3
    assert (torch.linalg.det(rot) > 0).all()
    assert torch.equal(c2w[:, 3], torch.tensor([0, 0, 0, 1.0], dtype=c2w.dtype).expand(len(c2w), 4))


# ---------------------------------------------------------------- real data
@pytest.mark.parametrize("name", sorted(BLENDER))
def test_blender_scene(name):
    sc = _scene(name)
    counts = {"train": BLENDER[name][0], "test": BLENDER[name][1], "relight": BLENDER[name][2]}
    assert sc.format == "blender" and not sc.normalized and sc.normalization is None
    assert {k: len(v) for k, v in sc.splits.items()} == {k: v for k, v in counts.items() if v}
    for split_name, sp in sc.splits.items():
        assert sp.images.shape[1:] == (200, 200, 3) and sp.images.dtype == torch.uint8  # 8-bit PNGs, as stored
        assert sp.masks is not None and sp.masks.shape[1:] == (200, 200)
        assert float(sp.masks.min()) >= 0 and float(sp.masks.max()) <= 1
        assert (sp.cameras.cx == 100).all() and (sp.cameras.cy == 100).all()
        _assert_rigid(sp.cameras.c2w)
        cams, masks = _all_views(sc, (split_name,))
        assert _hits(cams, torch.zeros(3, dtype=torch.float64), masks) >= 0.9 * len(cams)
    angle = json.loads((DATA / name / "transforms_train.json").read_text())["camera_angle_x"]
    assert float(sc.splits["train"].cameras.fx[0]) == pytest.approx(100 / math.tan(angle / 2), rel=1e-6)
    if name == "lego":
        assert sc.gt_mesh is None and sc.splits["test"].normals is None
        assert sc.splits["test"].files[0].name == "r_80.png"
    else:
        assert sc.gt_mesh == DATA / name / "gt_mesh.ply" and sc.meta["env_map"].endswith(".hdr")
        assert sc.meta["relight_env_map"] != sc.meta["env_map"]
        assert sc.splits["train"].normals is None


def test_blender_gt_normals_face_the_camera():
    sc = _scene("glossy_bunny")
    test = sc.splits["test"]
    n, m = test.normals, test.masks
    assert n.shape == (16, 200, 200, 3)
    norm = n.norm(dim=-1)
    fg = norm > 0
    assert (norm[fg] - 1).abs().max() < 1e-3 and (n[~fg] == 0).all()
    assert ((m > 0.5) & fg).sum() > 0.97 * (m > 0.5).sum()  # GT hits ~ alpha
    o, d, h, w = test.cameras.pixel_rays(0)
    ndot = (n[0].reshape(-1, 3) * d).sum(-1)[fg[0].reshape(-1)]
    assert (ndot < 0).float().mean() > 0.95  # world-frame normals point back at the camera


def test_max_views_keeps_even_train_subset():
    sc = load_scene(DATA / "lego", max_views=5) if (DATA / "lego").is_dir() else pytest.skip("no lego")
    assert len(sc.splits["train"]) == 5 and len(sc.splits["test"]) == 20
    assert [f.name for f in sc.splits["train"].files] == ["r_0.png", "r_20.png", "r_40.png", "r_59.png", "r_79.png"]


def test_dtu_scale_mat_centre_in_all_masks():
    sc = _scene("dtu_scan24")
    assert sc.format == "neus" and sc.normalization.source == "scale_mat"
    assert {k: len(v) for k, v in sc.splits.items()} == {"train": 42, "test": 7}
    assert sc.splits["train"].images.shape[1:] == (300, 400, 3)
    cams, masks = _all_views(sc)
    _assert_rigid(cams.c2w)
    npz = np.load(DATA / "dtu_scan24" / "cameras_sphere.npz")
    assert sc.normalization.scale == pytest.approx(float(npz["scale_mat_0"][0, 0]))
    centre = torch.tensor(sc.normalization.center, dtype=torch.float64)
    assert _hits(cams, centre, masks) == 49
    # our world-frame camera reproduces P = world_mat @ scale_mat on the normalised point (+0.5 px)
    x_norm = np.array([0.1, -0.2, 0.3, 1.0])
    uvw = (npz["world_mat_1"].astype(np.float64) @ npz["scale_mat_1"] @ x_norm)[:3]
    x_world = torch.as_tensor(sc.normalization.to_world(x_norm[:3]))
    uv, _ = cams.project(x_world[None], 0)  # view 1 is the first train view (view 0 is test)
    assert np.allclose(uv[0].numpy(), uvw[:2] / uvw[2] + 0.5, atol=2e-3)


def test_ethiopian_head_axes_point_in_all_masks():
    sc = _scene("ethiopian_head")
    assert sc.format == "llff" and sc.meta["factor"] == 8.0
    assert sum(len(v) for v in sc.splits.values()) == 66
    assert sc.splits["train"].images.shape[1:] == (500, 500, 3)
    assert 0 < sc.meta["near"] < sc.meta["far"]
    cams, masks = _all_views(sc)
    _assert_rigid(cams.c2w)
    assert float(cams.fx[0]) == pytest.approx(7543.57464065 / 8, rel=1e-6)
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert _hits(cams, _axes_point(cams), masks) == 66


def test_fox_axes_point_in_all_images():
    sc = _scene("fox")
    assert sc.format == "ngp" and sum(len(v) for v in sc.splits.values()) == 50
    sp = sc.splits["train"]
    assert (sp.cameras.width, sp.cameras.height) == (270, 480) and sp.masks is None
    assert sp.cameras.distortion.shape == (len(sp), 4)
    assert float(sp.cameras.distortion[0, 0]) == pytest.approx(0.0578421)
    assert float(sp.cameras.cx[0]) == pytest.approx(138.6395)  # no pixel-centre shift
    cams, _ = _all_views(sc)
    _assert_rigid(cams.c2w)
    assert _hits(cams, _axes_point(cams)) == 50


# ---------------------------------------------------------------- unit pieces
def test_split_rules():
    assert holdout_split(10, 4) == ([1, 2, 3, 5, 6, 7, 9], [0, 4, 8])
    assert holdout_split(1, 8) == ([0], [0])  # train never empty
    assert holdout_split(3, 0) == ([0, 1, 2], [])
    assert even_subset(range(10), 3) == [0, 4, 9] and even_subset([5, 6], None) == [5, 6]
    assert sorted(READERS.names()) == ["blender", "colmap", "llff", "neus", "ngp"]


def _encode_png16(arr: np.ndarray, path: Path):
    """16-bit RGB PNG whose rows cycle through all five filter types."""
    h, w, _ = arr.shape
    rows = arr.astype(">u2").view(np.uint8).reshape(h, w * 6).astype(np.int64)
    out, prev, bpp = b"", np.zeros(w * 6, np.int64), 6
    for r in range(h):
        x, ft = rows[r], r % 5
        a = np.concatenate([np.zeros(bpp, np.int64), x[:-bpp]])
        c = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        p = a + prev - c
        pa, pb, pc = abs(p - a), abs(p - prev), abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, prev, c))
        pred = [0, a, prev, (a + prev) // 2, paeth][ft]
        out += bytes([ft]) + ((x - pred) % 256).astype(np.uint8).tobytes()
        prev = x

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(out))
        + chunk(b"IEND", b"")
    )


def test_png16_all_filters(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, (7, 5, 3), dtype=np.uint16)
    arr[0, 0] = 0
    _encode_png16(arr, tmp_path / "n.png")
    assert np.array_equal(read_png16(tmp_path / "n.png")[..., :3], arr)
    n = load_normal_png16(tmp_path / "n.png")
    assert n.dtype == np.float32 and (n[0, 0] == 0).all()
    assert np.allclose(n[1, 1], arr[1, 1] / 65535 * 2 - 1, atol=1e-6)


def test_distortion_round_trip():
    k = torch.tensor([[0.0578421, -0.0805099, -0.000980296, 0.00015575]])
    c2w = torch.eye(4)[None].clone()
    c2w[0, :3, :3] = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    c2w[0, :3, 3] = torch.tensor([1.0, 2, 3])
    cams = Cameras(
        c2w,
        torch.tensor([343.88]),
        torch.tensor([343.62]),
        torch.tensor([138.6]),
        torch.tensor([241.3]),
        270,
        480,
        distortion=k,
    )
    px, py = torch.tensor([0.5, 10.0, 135.0, 269.5]), torch.tensor([0.5, 470.0, 240.0, 3.0])
    o, d = cams.rays(torch.zeros(4, dtype=torch.long), px, py)
    dc = d @ c2w[0, :3, :3]  # world -> camera directions
    xd, yd = distort_points(dc[:, 0] / dc[:, 2], dc[:, 1] / dc[:, 2], k[0])
    assert torch.allclose(343.88 * xd + 138.6, px, atol=1e-2)
    assert torch.allclose(343.62 * yd + 241.3, py, atol=1e-2)
    pinhole = Cameras(c2w, cams.fx, cams.fy, cams.cx, cams.cy, 270, 480)
    _, d0 = pinhole.rays(torch.zeros(4, dtype=torch.long), px, py)
    assert (d - d0).norm(dim=-1).max() > 1e-3  # distortion does change the corner rays


def test_decompose_projection_hand_values():
    K = np.array([[500.0, 0, 30], [0, 480, 20], [0, 0, 1]])
    ang = 0.3
    R = np.array([[math.cos(ang), 0, math.sin(ang)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]])
    t = np.array([0.1, -0.2, 4.0])
    P = K @ np.hstack([R, t[:, None]])
    for scale in (1.0, -3.0):  # P and -3P are the same camera
        K2, c2w = decompose_projection(scale * P)
        assert np.allclose(K2, K) and np.allclose(c2w[:3, :3], R.T) and np.allclose(c2w[:3, 3], -R.T @ t)


def test_blender_depth_maps_unproject_onto_the_gt_mesh():
    """``r_i_depth.npy`` (z-depth) of a train view, turned into ray distances, lands on the GT surface."""
    import trimesh
    from scipy.spatial import cKDTree

    from lumisurf.losses.depth import ray_depth

    sc = _scene("glossy_bunny")
    train = sc.splits["train"]
    assert train.depths is not None and train.depths.shape == (64, 200, 200)
    o, d, _, _ = train.cameras.pixel_rays(3)
    z = train.depths[3].reshape(-1)
    hit = z > 0
    assert ((train.masks[3].reshape(-1) > 0.5) == hit).float().mean() > 0.98
    pts = (o + d * ray_depth(z, d, train.cameras.c2w[3, :3, 2])[:, None])[hit]
    mesh = trimesh.load(sc.gt_mesh, process=False)
    dist, _ = cKDTree(mesh.sample(200_000, seed=0)).query(pts.numpy())
    assert np.median(dist) < 0.01 * mesh.scale
