"""Dataset readers: real shared scenes (skipped when absent), fakes for every error, COLMAP txt/bin."""

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
from PIL import Image

from lumisurf.data.cameras import Cameras, distort_points
from lumisurf.data.images import load_normal_png16, read_png16
from lumisurf.data.readers import READERS, detect_format, load_scene
from lumisurf.data.readers.common import even_subset, holdout_split
from lumisurf.data.readers.neus import decompose_projection
from lumisurf.errors import DataError

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


# ---------------------------------------------------------------- fakes
def _look_at_cv(eye, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """OpenCV c2w looking from ``eye`` at ``target`` (world +z up)."""
    eye = np.asarray(eye, float)
    z = np.asarray(target) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    m[:3, 3] = eye
    return m


EYES = [(3.0, 0.5, 1.0), (-0.5, 3.0, 0.8), (-3.0, -0.4, 1.2), (0.3, -3.0, 0.5)]


def _write_rgba(path: Path, w=16, h=12, alpha=True):
    arr = np.zeros((h, w, 4), np.uint8)
    arr[..., :3] = 128
    arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4, 3] = 255 if alpha else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGBA").save(path)


def _fake_blender(root: Path, n=3, sizes=None) -> Path:
    frames = []
    for i in range(n):
        _write_rgba(root / "train" / f"r_{i}.png", *(sizes[i] if sizes else (16, 12)))
        frames.append(
            {
                "file_path": f"./train/r_{i}",
                "transform_matrix": (_look_at_cv(EYES[i]) @ np.diag([1, -1, -1, 1])).tolist(),
            }
        )
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return root


def _edit_blender(root: Path, fn):
    p = root / "transforms_train.json"
    meta = json.loads(p.read_text())
    fn(meta["frames"])
    p.write_text(json.dumps(meta))


def test_fake_blender_reads_and_converts(tmp_path):
    sc = load_scene(_fake_blender(tmp_path))
    cams = sc.splits["train"].cameras
    assert np.allclose(cams.c2w[0].numpy(), _look_at_cv(EYES[0]), atol=1e-6)
    assert float(cams.fx[0]) == pytest.approx(8 / math.tan(0.35)) and float(cams.cy[0]) == 6.0
    assert sc.splits["train"].masks[0].sum() == 48 and "test" not in sc.splits


@pytest.mark.parametrize(
    "case,needle",
    [
        ("missing", "r_9"),
        ("nonrigid", "rigid"),
        ("nan", "not finite"),
        ("size", "r_1.png"),
        ("empty_alpha", "empty"),
        ("garbage", "cannot read image"),
    ],
)
def test_fake_blender_errors(tmp_path, case, needle):
    root = _fake_blender(tmp_path, sizes=[(16, 12), (20, 12), (16, 12)] if case == "size" else None)
    if case == "missing":
        _edit_blender(root, lambda fr: fr[1].update(file_path="./train/r_9"))
    elif case == "nonrigid":
        _edit_blender(
            root,
            lambda fr: fr[1].update(
                transform_matrix=(np.diag([1.1, 1, 1, 1]) @ np.array(fr[1]["transform_matrix"])).tolist()
            ),
        )
    elif case == "nan":
        _edit_blender(root, lambda fr: fr[2]["transform_matrix"][0].__setitem__(3, float("nan")))
    elif case == "empty_alpha":
        _write_rgba(root / "train" / "r_2.png", alpha=False)
    elif case == "garbage":
        (root / "train" / "r_1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=needle):
        load_scene(root)


def _fake_neus(root: Path, n=3, n_images=None, empty_mask=None, scale_mat=None):
    K = np.array([[20.0, 0, 7.5], [0, 20, 5.5], [0, 0, 1]])  # integer pixel centres (NeuS)
    S = np.diag([2.0, 2.0, 2.0, 1.0]) if scale_mat is None else scale_mat
    S[:3, 3] = [0.5, -1.0, 3.0]
    data = {}
    for i in range(n):
        w2c = np.linalg.inv(_look_at_cv(EYES[i]))
        P = np.eye(4)
        P[:3] = K @ w2c[:3]
        data[f"world_mat_{i}"] = P @ np.linalg.inv(S)
        data[f"scale_mat_{i}"] = S
    np.savez(root / "cameras_sphere.npz", **data)
    for i in range(n if n_images is None else n_images):
        (root / "image").mkdir(exist_ok=True)
        (root / "mask").mkdir(exist_ok=True)
        Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(root / "image" / f"{i:06d}.png")
        m = np.zeros((12, 16, 3), np.uint8)
        if i != empty_mask:
            m[3:9, 4:12] = 255
        Image.fromarray(m).save(root / "mask" / f"{i:03d}.png")
    return root


def test_fake_neus_world_frame(tmp_path):
    sc = load_scene(_fake_neus(tmp_path), holdout_every=0)
    cams = sc.splits["train"].cameras
    assert sc.format == "neus" and sc.normalization.scale == 2.0
    assert sc.normalization.center == (0.5, -1.0, 3.0)
    # camera centre: normalised eye mapped to world with x = 2 x_n + c
    assert np.allclose(cams.c2w[0, :3, 3].numpy(), 2 * np.array(EYES[0]) + [0.5, -1.0, 3.0], atol=1e-5)
    assert float(cams.cx[0]) == pytest.approx(8.0) and float(cams.cy[0]) == pytest.approx(6.0)
    uv, z = cams.project(torch.tensor([[0.5, -1.0, 3.0]]), 1)  # scale-mat centre -> image centre
    assert np.allclose(uv[0].numpy(), [8.0, 6.0], atol=1e-4) and z[0] > 0


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"n_images": 4}, "has 3 views but"),
        ({"empty_mask": 1}, "001.png"),
        ({"scale_mat": np.diag([2.0, 1.0, 2.0, 1.0])}, "uniform scale"),
    ],
)
def test_fake_neus_errors(tmp_path, kw, needle):
    with pytest.raises(DataError, match=needle):
        load_scene(_fake_neus(tmp_path, **kw))


def test_fake_llff_row_mismatch_and_masks(tmp_path):
    rows = []
    for e in EYES[:3]:
        gl = _look_at_cv(e) @ np.diag([1, -1, -1, 1])  # OpenGL columns right, up, back
        llff = np.stack([-gl[:3, 1], gl[:3, 0], gl[:3, 2], gl[:3, 3], [96.0, 128.0, 160.0]], 1)
        rows.append(np.concatenate([llff.reshape(-1), [1.0, 5.0]]))
    np.save(tmp_path / "poses_bounds.npy", np.stack(rows))
    (tmp_path / "images_8").mkdir()
    (tmp_path / "masks_8").mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 16, 3), 200, np.uint8)).save(tmp_path / "images_8" / f"a{i}.JPG")
        Image.fromarray(np.full((12, 16, 3), 250, np.uint8)).save(tmp_path / "masks_8" / f"a{i}.jpg")
    sc = load_scene(tmp_path, holdout_every=0)
    cams = sc.splits["train"].cameras
    assert np.allclose(cams.c2w[1].numpy(), _look_at_cv(EYES[1]), atol=1e-6)
    assert float(cams.fx[0]) == 20.0 and float(cams.cx[0]) == 8.0 and sc.meta["far"] == 5.0
    assert sc.splits["train"].masks.min() == 1.0
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "images_8" / "a3.JPG")
    with pytest.raises(DataError, match="3 rows but"):
        load_scene(tmp_path)


def test_fake_ngp_errors(tmp_path):
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "0.jpg")
    frame = {"file_path": "0.jpg", "transform_matrix": np.eye(4).tolist()}
    meta = {"fl_x": 20.0, "w": 16, "h": 12, "frames": [frame, dict(frame)]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    sc = load_scene(tmp_path, holdout_every=0)
    assert sc.splits["train"].cameras.distortion is None and float(sc.splits["train"].cameras.fy[0]) == 20.0
    (tmp_path / "transforms.json").write_text(json.dumps({**meta, "w": 18}))
    with pytest.raises(DataError, match="disagrees with w x h"):
        load_scene(tmp_path)
    meta["frames"][1] = {**frame, "file_path": "missing.jpg"}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="missing.jpg"):
        load_scene(tmp_path)


def test_undetectable_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="transforms_train.json.*cameras_sphere.npz.*poses_bounds.npy"):
        detect_format(tmp_path)
    with pytest.raises(DataError, match="unknown dataset format 'foo'"):
        load_scene(tmp_path, format="foo")
    with pytest.raises(DataError, match="not found"):
        load_scene(tmp_path / "nope")


# ---------------------------------------------------------------- COLMAP
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
        w2c = np.linalg.inv(_look_at_cv(e))
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
        w2c = np.linalg.inv(_look_at_cv(EYES[i]))
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
