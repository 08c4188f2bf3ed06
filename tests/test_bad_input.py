"""Malformed datasets through the CLI: ``lumisurf data check`` and ``lumisurf train`` end with exactly one
``lumisurf: error:`` line naming the file or the cause (exit 2, no traceback); ``--debug`` keeps it.

Every case is the built-in synthetic scene written as a tiny Blender folder (4 train + 1 test views at
16 px, straight-alpha RGBA PNGs) and then broken one way. The readers' own messages are unit-tested on
hand-made fakes in ``test_readers.py``; here the whole path from the command line is exercised.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lumisurf.train.trainer  # noqa: F401  (imports Warp now: its driver banner stays out of capsys)
from lumisurf.cli import main
from lumisurf.data.synthetic import FOV_DEG, make_synthetic_scene
from lumisurf.errors import DataError, DataWarning

CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV c2w -> Blender's OpenGL c2w (and back)
TRAIN_ARGS = [
    "--max-steps",
    "3",
    "--device",
    "cpu",
    "--no-progress",
    "train.batch_rays=64",
    "train.val_every=0",
    "train.ckpt_every=0",
    "train.finalize=false",
    "sampler.n_samples=8",
    "sampler.n_importance=8",
    "sampler.up_sample_steps=2",
    "model.background.n_samples=4",
]


def write_blender(root: Path, n_train: int = 4, n_test: int = 1, resolution: int = 16) -> Path:
    """The built-in scene as a Blender folder: transforms_{train,test}.json + <split>/r_<i>.png (RGBA)."""
    scene = make_synthetic_scene(n_train=n_train, n_test=n_test, resolution=resolution)
    for split, sp in scene.splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(len(sp)):
            rgba = np.concatenate([sp.images[i].numpy(), sp.masks[i].numpy()[..., None]], -1)  # [H, W, 4]
            Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(root / split / f"r_{i}.png")
            c2w = sp.cameras.c2w[i].double().numpy() @ CV_TO_GL
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
        meta = {"camera_angle_x": math.radians(FOV_DEG), "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return root


def _edit(root: Path, fn, split: str = "train") -> None:
    path = root / f"transforms_{split}.json"
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def _set_alpha(folder: Path, value: int) -> None:
    for p in folder.glob("*.png"):
        a = np.asarray(Image.open(p)).copy()
        a[..., 3] = value
        Image.fromarray(a, "RGBA").save(p)


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _set_pose(m: dict, k: int, pose: np.ndarray) -> None:
    m["frames"][k]["transform_matrix"] = pose.tolist()


def _scale_pose(m: dict, k: int, s: float) -> None:
    _set_pose(m, k, np.diag([s, 1, 1, 1]) @ np.array(m["frames"][k]["transform_matrix"]))


# name -> (break the folder, what the one error line must contain)
CASES = {
    "missing_image": (lambda r: (r / "train" / "r_1.png").unlink(), ["not found", "train/r_1"]),
    "corrupt_image": (lambda r: (r / "train" / "r_1.png").write_bytes(b"not a png"), ["cannot read image", "r_1.png"]),
    "truncated_image": (lambda r: _truncate(r / "train" / "r_2.png"), ["truncated", "r_2.png"]),
    "nan_pose": (
        lambda r: _edit(r, lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(3, math.nan)),
        ["transforms_train.json", "frame 1", "not finite"],
    ),
    "singular_pose": (
        lambda r: _edit(r, lambda m: _set_pose(m, 2, np.eye(4)[[3, 3, 3, 3]])),  # R = 0
        ["transforms_train.json", "frame 2", "rigid"],
    ),
    "nonrigid_pose": (
        lambda r: _edit(r, lambda m: _scale_pose(m, 0, 2.0)),
        ["transforms_train.json", "frame 0", "rigid"],
    ),
    "empty_frames": (lambda r: _edit(r, lambda m: m.update(frames=[])), ["transforms_train.json", "'frames'"]),
    "invalid_json": (
        lambda r: (r / "transforms_train.json").write_text('{"frames": ['),
        ["cannot read", "transforms_train.json"],
    ),
    "missing_camera_angle_x": (
        lambda r: _edit(r, lambda m: m.pop("camera_angle_x")),
        ["transforms_train.json", "camera_angle_x"],
    ),
    "bad_camera_angle_x": (
        lambda r: _edit(r, lambda m: m.update(camera_angle_x=4.0), "test"),
        ["transforms_test.json", "camera_angle_x = 4.0"],
    ),
    "frame_without_matrix": (
        lambda r: _edit(r, lambda m: m["frames"][1].pop("transform_matrix")),
        ["transforms_train.json", "frame 1", "transform_matrix"],
    ),
    "image_of_another_size": (
        lambda r: Image.new("RGBA", (20, 12), (9, 9, 9, 255)).save(r / "train" / "r_3.png"),
        ["r_3.png", "20x12", "16x16"],
    ),
    "all_transparent": (lambda r: _set_alpha(r / "train", 0), ["r_0.png", "empty"]),
    # closed gaps: a single training view (was "visual hull is empty")
    "single_view": (
        lambda r: _edit(r, lambda m: m.update(frames=m["frames"][:1])),
        ["need at least 2 training views (found 1)", "transforms_train.json"],
    ),
}


@pytest.fixture(scope="module")
def blender_base(tmp_path_factory) -> Path:
    return write_blender(tmp_path_factory.mktemp("blender") / "scene")


def _broken(base: Path, tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(base, root)
    CASES[name][0](root)
    return root


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lumisurf: error: "), err
    return lines[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_data_check_one_line(blender_base, tmp_path, capsys, name):
    root = _broken(blender_base, tmp_path, name)
    assert main(["data", "check", str(root), "--out", str(tmp_path / "check.png")]) == 2
    line = _one_error_line(capsys)
    for needle in CASES[name][1]:
        assert needle in line
    assert not (tmp_path / "check.png").exists()


@pytest.mark.parametrize("name", sorted(CASES))
def test_train_one_line(blender_base, tmp_path, capsys, name):
    root = _broken(blender_base, tmp_path, name)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run")] + TRAIN_ARGS) == 2
    line = _one_error_line(capsys)
    for needle in CASES[name][1]:
        assert needle in line
    assert not (tmp_path / "run" / "ckpt" / "last.pt").exists()


def _cameras_inside(root: Path) -> None:
    """Alpha opaque everywhere and a wider camera_angle_x: the visual hull fills the views' frusta, so
    after normalisation every camera (distance ~0.5) lies inside the unit sphere."""
    for split in ("train", "test"):
        _edit(root, lambda m: m.update(camera_angle_x=2 * math.atan(2.5 * math.tan(0.5 * m["camera_angle_x"]))), split)
        _set_alpha(root / split, 255)


def test_cameras_inside_sphere_warn_in_check_refused_in_train(blender_base, tmp_path, capsys):
    root = tmp_path / "inside"
    shutil.copytree(blender_base, root)
    _cameras_inside(root)
    assert main(["data", "check", str(root), "--out", str(tmp_path / "check.png")]) == 0
    out = capsys.readouterr().out
    warns = [line for line in out.splitlines() if line.startswith("WARN:")]
    assert len(warns) == 1 and "5/5 cameras lie inside the unit sphere" in warns[0]
    assert "training refuses" in warns[0] and "all cameras outside the unit sphere: no" in out
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run")] + TRAIN_ARGS) == 2
    line = _one_error_line(capsys)
    assert "4/4 training cameras lie inside the unit sphere" in line and "transforms_train.json" in line


def test_cameras_scaled_inside_identity_frame_refused(blender_base, tmp_path, capsys):
    """Camera centres scaled towards the object (x 0.25: distance ~0.75) in a frame taken as is. (Under the
    default visual-hull normalisation the same folder is only a smaller world: the cameras end up outside.)"""
    root = tmp_path / "scaled"
    shutil.copytree(blender_base, root)

    def shrink(m: dict) -> None:
        for fr in m["frames"]:
            fr["transform_matrix"] = (np.array(fr["transform_matrix"]) * [1, 1, 1, 0.25]).tolist()

    _edit(root, shrink)
    args = ["train", "--data", str(root), "--out", str(tmp_path / "run")] + TRAIN_ARGS
    assert main(args + ["data.normalization=identity"]) == 2
    assert "4/4 training cameras lie inside the unit sphere" in _one_error_line(capsys)


def test_greyscale_among_rgba_is_accepted(blender_base, tmp_path, capsys):
    root = tmp_path / "grey"
    shutil.copytree(blender_base, root)
    Image.open(root / "train" / "r_1.png").convert("L").save(root / "train" / "r_1.png")
    assert main(["data", "check", str(root), "--out", str(tmp_path / "check.png")]) == 0
    out = capsys.readouterr().out
    assert "train 4 views" in out and (tmp_path / "check.png").exists()
    # accepted, but not silently: its split loses the alpha masks, and both commands say so, naming the file
    assert "WARN: 1 of 4 images have no alpha channel (first: " in out and "r_1.png" in out
    with pytest.warns(DataWarning, match="r_1.png.*WITHOUT masks"):
        assert main(["train", "--data", str(root), "--out", str(tmp_path / "run")] + TRAIN_ARGS) == 0
    assert (tmp_path / "run" / "ckpt" / "last.pt").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_debug_keeps_the_traceback(blender_base, tmp_path):
    root = _broken(blender_base, tmp_path, "single_view")
    with pytest.raises(DataError, match="need at least 2 training views"):
        main(["--debug", "data", "check", str(root), "--out", str(tmp_path / "check.png")])
    with pytest.raises(DataError, match="cannot read image"):
        main(
            [
                "--debug",
                "train",
                "--data",
                str(_broken(blender_base, tmp_path, "corrupt_image")),
                "--out",
                str(tmp_path / "run"),
            ]
            + TRAIN_ARGS
        )
