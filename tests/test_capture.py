"""`lumisurf data process`: photos/video in, a COLMAP dataset out (pycolmap and imageio-ffmpeg: extra `capture`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumisurf.data.capture.frames import load_photo, pick_frames, sharpness
from lumisurf.data.capture.process import ProcessOptions, _gather_photos, match_masks, process_capture
from lumisurf.errors import DataError, DataWarning
from lumisurf.eval.pose_align import pose_errors, umeyama

sys.path.insert(0, str(Path(__file__).parent))
from capture_scene import box_masks, write_photos  # noqa: E402

N_VIEWS = 18  # an orbit of 20 degree steps (30 degree steps leave SIFT short tracks and SfM at its edge)


def test_sharpness_hand_value_and_blur_order():
    assert sharpness(np.full((8, 8, 3), 77, np.uint8)) == 0.0
    checker = ((np.indices((8, 8)).sum(0) % 2) * 255).astype(np.uint8)
    # interior Laplacian is -1020 on white and +1020 on black cells, half each: variance 1020^2
    assert sharpness(np.repeat(checker[..., None], 3, -1)) == pytest.approx(1020.0**2)
    rng = np.random.default_rng(0)
    sharp = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    blurred = ((sharp[:-1, :-1].astype(float) + sharp[1:, 1:] + sharp[:-1, 1:] + sharp[1:, :-1]) / 4).astype(np.uint8)
    assert sharpness(blurred) < 0.5 * sharpness(sharp)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :5] = 255  # a white stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(tmp_path / "p.jpg", exif=exif, quality=100)
    up = np.asarray(load_photo(tmp_path / "p.jpg"))
    assert up.shape == (40, 20, 3)
    assert up[:5].mean() > 200 and up[-5:].mean() < 50  # the left edge is now the top


def test_mixed_orientations_share_one_size(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    for k in range(3):
        Image.new("RGB", (60, 40), (k * 40, 0, 0)).save(src / f"l{k}.png")
    Image.new("RGB", (40, 60), (0, 200, 0)).save(src / "portrait.png")
    names = _gather_photos(src, out, ProcessOptions(progress=False))
    assert sorted(names) == ["l0.png", "l1.png", "l2.png", "portrait.png"]
    assert {Image.open(out / n).size for n in names} == {(60, 40)}
    Image.new("RGB", (90, 40)).save(src / "wide.png")
    with pytest.raises(DataError, match="aspect ratio"):
        _gather_photos(src, out, ProcessOptions(progress=False))


def test_masks_pair_by_stem_else_by_sorted_order(tmp_path):
    for n in ("000.png", "001.png"):
        Image.new("L", (4, 4), 255).save(tmp_path / n)
    assert [p.name for p in match_masks(tmp_path, ["000.png", "001.png"])] == ["000.png", "001.png"]
    with pytest.warns(DataWarning, match="sorted order"):
        assert [p.name for p in match_masks(tmp_path, ["000000.png", "000001.png"])] == ["000.png", "001.png"]
    with pytest.raises(DataError, match="no mask for 3"):
        match_masks(tmp_path, ["a.png", "b.png", "c.png"])


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    sim = umeyama(x, 2.5 * x @ rot.T + np.array([1.0, -2.0, 0.5]))
    assert (
        sim.scale == pytest.approx(2.5)
        and np.allclose(sim.rotation, rot)
        and np.allclose(sim.translation, [1.0, -2.0, 0.5])
    )


def test_video_frames_keep_the_sharpest_of_each_stretch(tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="video input needs the 'capture' extra")
    rng = np.random.default_rng(0)
    sharp = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    flat = np.full_like(sharp, 128)
    frames = [sharp if k % 4 == 2 else flat for k in range(24)]  # one detailed frame in each 4
    writer = ffmpeg.write_frames(str(tmp_path / "v.mp4"), (96, 64), fps=10, quality=9, macro_block_size=1)
    writer.send(None)
    for f in frames:
        writer.send(f)
    writer.close()
    picked = pick_frames(tmp_path / "v.mp4", 6)
    assert [i for i, _ in picked] == [2, 6, 10, 14, 18, 22]
    assert picked[0][1].shape == (64, 96, 3)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    pytest.importorskip("pycolmap", reason="structure from motion needs the 'capture' extra")
    root = tmp_path_factory.mktemp("capture")
    poses = write_photos(root / "photos", n=N_VIEWS)
    report = process_capture(root / "photos", root / "dataset", ProcessOptions(progress=False), log=lambda s: None)
    return root / "dataset", poses, report


def test_sfm_recovers_the_orbit(processed):
    root, poses, report = processed
    assert report["n_registered"] == N_VIEWS and report["mean_reprojection_error"] < 1.0
    assert json.loads((root / "process_report.json").read_text())["n_registered"] == N_VIEWS
    for n in (2, 4):
        assert Image.open(root / f"images_{n}" / "view_00.png").size == (320 // n, 240 // n)
    from lumisurf.data.readers.colmap import read_colmap

    scene = read_colmap(root, holdout_every=0)
    err = pose_errors(scene.split("train").cameras.c2w.numpy(), poses)
    # 30 degrees between views and short tracks: a wrong model is off by tens of degrees
    assert np.median(err.rotation_deg) < 4.0 and np.median(err.centre) < 0.08
    assert float(scene.split("train").cameras.fx[0]) == pytest.approx(300.0, rel=0.05)


def test_pycolmap_model_reads_back_with_identical_cameras(processed):
    import pycolmap

    from lumisurf.data.readers.colmap import read_colmap

    root, _, _ = processed
    rec = pycolmap.Reconstruction(str(root / "sparse" / "0"))
    cams = read_colmap(root, holdout_every=0).split("train")
    by_name = {Path(f).name: k for k, f in enumerate(cams.files)}
    assert len(by_name) == rec.num_reg_images()
    for image_id in rec.reg_image_ids():
        im = rec.image(image_id)
        k = by_name[im.name]
        w2c = np.eye(4)
        w2c[:3] = im.cam_from_world().matrix() if callable(im.cam_from_world) else im.cam_from_world.matrix()
        np.testing.assert_allclose(cams.cameras.c2w[k].numpy(), np.linalg.inv(w2c), atol=1e-5)
        f, cx, cy, k1 = im.camera.params
        np.testing.assert_allclose(
            [
                float(cams.cameras.fx[k]),
                float(cams.cameras.cx[k]),
                float(cams.cameras.cy[k]),
                float(cams.cameras.distortion[k, 0]),
            ],
            [f, cx, cy, k1],
            rtol=1e-6,
            atol=1e-6,
        )


def test_too_few_registered_names_the_cause(tmp_path):
    pytest.importorskip("pycolmap", reason="structure from motion needs the 'capture' extra")
    src = tmp_path / "flat"
    src.mkdir()
    for k in range(5):  # textureless photos: no features, nothing registers
        Image.new("RGB", (160, 120), (100 + 10 * k, 90, 80)).save(src / f"{k}.png")
    with pytest.raises(DataError, match=r"registered only 0 of 5 images: 5 of 5 images have fewer than 100 SIFT"):
        process_capture(src, tmp_path / "out", ProcessOptions(progress=False), log=lambda s: None)


def test_missing_capture_extra_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)
    write_photos(tmp_path / "p", n=3, w=64, h=48, f=60.0)
    with pytest.raises(DataError, match=r'pip install -e "\.\[capture\]"'):
        process_capture(tmp_path / "p", tmp_path / "out", ProcessOptions(progress=False), log=lambda s: None)


def test_sparse_points_normalisation_ignores_the_room():
    import torch
    from capture_scene import orbit

    from lumisurf.data.normalization import sparse_points_normalization
    from lumisurf.data.readers.common import make_cameras

    cams = make_cameras(orbit(16), 300.0, 300.0, 160.0, 120.0, 320, 240)
    rng = np.random.default_rng(0)
    obj = rng.uniform(-0.5, 0.5, (400, 3))  # the object, in every view
    a = rng.uniform(0, 2 * np.pi, 2000)  # a far wall around the orbit: each point in few views
    room = np.stack([8 * np.cos(a), 8 * np.sin(a), rng.uniform(-1, 2, 2000)], 1)
    norm = sparse_points_normalization(cams, np.concatenate([obj, room]))
    expected = 1.1 * float(torch.as_tensor(obj).norm(dim=1).quantile(0.95))
    assert np.allclose(norm.center, 0.0, atol=1e-3) and norm.scale == pytest.approx(expected, rel=0.02)
    assert norm.source == "sparse_points"


def test_colmap_points_are_read_and_used_by_auto(processed):
    import pycolmap

    from lumisurf.data.normalization import normalize_scene
    from lumisurf.data.readers.colmap import read_colmap

    root, poses, _ = processed
    rec = pycolmap.Reconstruction(str(root / "sparse" / "0"))
    scene = read_colmap(root, holdout_every=0)
    assert scene.meta["points3D"].shape == (rec.num_points3D(), 3)
    some = next(iter(rec.points3D.values()))
    assert np.isclose(scene.meta["points3D"], some.xyz).all(1).any()
    norm = normalize_scene(scene).normalization
    assert norm.source == "sparse_points"
    # the box's corners, taken from the true frame into SfM's and normalised: inside the sphere, and filling it
    sim = pose_errors(scene.split("train").cameras.c2w.numpy(), poses).align  # SfM world -> true world
    corners = np.stack(np.meshgrid(*[[-0.5, 0.5]] * 3, indexing="ij"), -1).reshape(-1, 3)
    in_sfm = (corners - sim.translation) @ sim.rotation / sim.scale
    dist = np.linalg.norm(np.asarray(norm.to_normalized(in_sfm)), axis=1)
    assert dist.min() > 0.4 and dist.max() < 1.0


def test_auto_masks_from_the_sfm_points(processed, tmp_path, capsys):
    """``data process --masks auto`` after SfM: masks/ by image stem, matching the box's true silhouettes."""
    pytest.importorskip("cv2", reason="automatic masks need the 'capture' extra (OpenCV)")
    import shutil

    from lumisurf.data.capture.process import _auto_masks

    root, poses, _ = processed
    copy = tmp_path / "dataset"
    shutil.copytree(root / "images", copy / "images")
    shutil.copytree(root / "sparse", copy / "sparse")
    lines = []
    info = _auto_masks(copy, False, lines.append)
    assert 0.05 < info["coverage"] < 0.5 and any(f"{N_VIEWS} masks of 320x240" in s for s in lines)
    gt = box_masks(poses)
    ious = []
    for k in range(N_VIEWS):
        m = np.asarray(Image.open(copy / "masks" / f"view_{k:02d}.png")) > 127
        ious.append(float((m & gt[k]).sum() / (m | gt[k]).sum()))
    assert np.mean(ious) >= 0.9 and min(ious) >= 0.8, ious
    assert (copy / "masks_overview.png").exists() and not (copy / "masks" / "overview.png").exists()
    from lumisurf.data.readers.colmap import read_colmap

    assert read_colmap(copy, holdout_every=0).split("train").masks is not None  # training reads them
    # `lumisurf data masks` on the same dataset, which now has masks: it reports the IoU against them
    from lumisurf.cli import main

    assert main(["data", "masks", str(copy), "--out", str(tmp_path / "again")]) in (0, None)
    assert len(list((tmp_path / "again").glob("view_*.png"))) == N_VIEWS
    assert (tmp_path / "again" / "overview.png").exists()
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("IoU against the dataset's masks"))
    assert float(line.split("mean ")[1].split(",")[0]) > 0.95  # the same method twice: nearly the same masks
