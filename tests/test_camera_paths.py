"""Camera paths (orbit, spiral, interpolation, JSON files) and `lumisurf render --path ... --video`."""

import json
import math

import pytest
import torch

from lumisurf.cli import main
from lumisurf.data.camera_paths import interpolate, look_at, make_path, read_path_file
from lumisurf.data.scene import Normalization
from lumisurf.errors import DataError


def _rig(n=6, radius=3.0, height=1.0):
    eyes = [
        torch.tensor([radius * math.cos(a), radius * math.sin(a), height])
        for a in torch.linspace(0, 2 * math.pi, n + 1)[:-1].tolist()
    ]
    return torch.stack([look_at(e, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])) for e in eyes])


def test_look_at_is_opencv():
    c2w = look_at(torch.tensor([0.0, -2.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, 1.0, 0.0]))  # looks along +z at the target
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, 0.0, -1.0]))  # image y points down
    assert torch.allclose(c2w[:3, :3].T @ c2w[:3, :3], torch.eye(3), atol=1e-6)


def test_interpolation_passes_exactly_through_its_keys():
    keys = _rig(4)
    path = interpolate(keys, 10)  # keys at frames 0, 3, 6, 9
    for i, f in enumerate((0, 3, 6, 9)):
        assert torch.allclose(path[f], keys[i], atol=1e-5)
    mid = path[1, :3, 3]  # a third of the way from key 0 to key 1 along the chord
    assert torch.allclose(mid, keys[0, :3, 3] + (keys[1, :3, 3] - keys[0, :3, 3]) / 3, atol=1e-5)
    assert torch.allclose(path[1, :3, :3].T @ path[1, :3, :3], torch.eye(3), atol=1e-5)
    with pytest.raises(DataError, match="at least 2"):
        interpolate(keys[:1], 5)


def test_orbit_circles_the_origin_at_the_rig_distance():
    from lumisurf.data.readers.common import make_cameras

    cams = make_cameras(_rig(6).numpy(), 50.0, 50.0, 32.0, 24.0, 64, 48)
    for kind in ("orbit", "spiral"):
        path = make_path(kind, cams, 12)
        eye = path.c2w[:, :3, 3]
        assert len(path) == 12 and path.width == 64 and torch.allclose(path.fx, torch.full((12,), 50.0))
        assert torch.allclose(eye.norm(dim=-1), torch.full((12,), math.sqrt(10.0)), atol=1e-4)
        assert torch.allclose(path.c2w[:, :3, 2], -eye / eye.norm(dim=-1, keepdim=True), atol=1e-5)  # at 0
    assert torch.allclose(make_path("orbit", cams, 12).c2w[:, 2, 3], torch.full((12,), 1.0), atol=1e-4)


def test_path_file_in_world_units(tmp_path):
    keys = _rig(3)
    keys[:, :3, 3] = keys[:, :3, 3] * 2.0 + torch.tensor([1.0, 0.0, 0.0])  # a world frame: scale 2, centre x=1
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"frame": "world", "cameras": keys.tolist()}))
    back = read_path_file(f, Normalization(center=(1.0, 0.0, 0.0), scale=2.0))
    assert torch.allclose(back, _rig(3), atol=1e-5)
    f.write_text(json.dumps({"cameras": [[1, 2]]}))
    with pytest.raises(DataError, match="4x4"):
        read_path_file(f)


def test_orbit_video_reads_back(tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="videos need the 'capture' extra")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--max-steps",
                "2",
                "--device",
                "cpu",
                "--no-progress",
                "data.synthetic_resolution=16",
                "data.synthetic_views=5",
                "train.batch_rays=32",
                "train.val_every=0",
                "train.finalize=false",
                "sampler.n_samples=8",
                "sampler.n_importance=8",
                "sampler.up_sample_steps=2",
            ]
        )
        == 0
    )
    video = tmp_path / "orbit.mp4"
    assert main(["render", str(run), "--path", "orbit", "--frames", "8", "--video", str(video), "--side-by-side"]) == 0
    assert len(list((run / "renders" / "path_orbit").glob("frame_*.png"))) == 8
    reader = ffmpeg.read_frames(str(video))
    meta = next(reader)
    assert tuple(meta["size"]) == (48, 16)  # rgb | normal | depth of 16 x 16 views
    assert sum(1 for _ in reader) == 8


def test_meshes_carry_the_radiance_as_vertex_colors(tmp_path):
    import numpy as np
    import trimesh

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--max-steps",
                "2",
                "--device",
                "cpu",
                "--no-progress",
                "data.synthetic_resolution=16",
                "data.synthetic_views=5",
                "train.batch_rays=32",
                "train.val_every=0",
                "train.finalize=false",
                "sampler.n_samples=8",
                "sampler.n_importance=8",
                "sampler.up_sample_steps=2",
            ]
        )
        == 0
    )
    assert main(["extract", str(run), "--resolution", "32", "--format", "ply", "glb", "obj"]) == 0
    ply = trimesh.load(run / "mesh.ply", process=False)
    colors = np.asarray(ply.visual.vertex_colors)[:, :3]
    assert len(ply.vertices) > 0 and colors.std(0).max() > 0  # per-vertex colors, not one default
    glb = trimesh.load(run / "mesh.glb", force="mesh", process=False)
    assert len(glb.vertices) == len(ply.vertices)
    assert np.array_equal(np.asarray(glb.visual.vertex_colors)[:, :3], colors)
    assert (run / "mesh.obj").read_text().count("\nv ") == len(ply.vertices)
