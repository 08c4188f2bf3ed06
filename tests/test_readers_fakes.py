"""Dataset readers on hand-written fake datasets: every format's conversion to OpenCV cameras and every error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reader_fakes import EYES, fake_blender, look_at_cv, write_rgba

from lumisurf.data.readers import detect_format, load_scene
from lumisurf.errors import DataError


def _edit_blender(root: Path, fn):
    p = root / "transforms_train.json"
    meta = json.loads(p.read_text())
    fn(meta["frames"])
    p.write_text(json.dumps(meta))


def testfake_blender_reads_and_converts(tmp_path):
    sc = load_scene(fake_blender(tmp_path))
    cams = sc.splits["train"].cameras
    assert np.allclose(cams.c2w[0].numpy(), look_at_cv(EYES[0]), atol=1e-6)
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
def testfake_blender_errors(tmp_path, case, needle):
    root = fake_blender(tmp_path, sizes=[(16, 12), (20, 12), (16, 12)] if case == "size" else None)
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
        write_rgba(root / "train" / "r_2.png", alpha=False)
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
        w2c = np.linalg.inv(look_at_cv(EYES[i]))
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
        gl = look_at_cv(e) @ np.diag([1, -1, -1, 1])  # OpenGL columns right, up, back
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
    assert np.allclose(cams.c2w[1].numpy(), look_at_cv(EYES[1]), atol=1e-6)
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
