"""Normalisation (scale_mat / visual hull / camera rig / identity) and ``lumisurf data check``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_dataset
from PIL import Image

from lumisurf.data import normalization as N
from lumisurf.data.cameras import Cameras
from lumisurf.data.normalization import estimate_normalization, normalize_scene
from lumisurf.data.readers import load_scene
from lumisurf.data.scene import Normalization, SceneData, Split
from lumisurf.data.synthetic import look_at_cameras, make_synthetic_scene
from lumisurf.errors import DataError


def _load(name: str) -> SceneData:
    return load_scene(shared_dataset(name))


def _gt_radius(scene: SceneData) -> np.ndarray:
    import trimesh

    mesh = scene.gt_mesh if isinstance(scene.gt_mesh, trimesh.Trimesh) else trimesh.load(scene.gt_mesh, force="mesh")
    return np.linalg.norm(scene.normalization.to_normalized(np.asarray(mesh.vertices)), axis=1)


@pytest.fixture(scope="module")
def syn():
    return make_synthetic_scene(n_train=12, n_test=2, resolution=48, seed=1)


def _rig(target, n=6, dist=4.0, width=40, height=30) -> Cameras:
    """Cameras on a ring around ``target`` looking at it."""
    ang = torch.arange(n) * 2 * math.pi / n
    eyes = torch.stack([torch.cos(ang), torch.sin(ang), 0.3 * torch.ones(n)], -1)
    eyes = eyes / eyes.norm(dim=-1, keepdim=True) * dist
    cams = look_at_cameras(eyes.numpy(), width, height)
    return cams.transformed(1.0, -torch.tensor(target))  # shift the rig by +target


def test_closest_point_to_axes():
    target = (0.3, -0.2, 0.5)
    p = N.closest_point_to_axes(_rig(target))
    assert torch.allclose(p, torch.tensor(target, dtype=torch.float64), atol=1e-4)
    # two perpendicular axes that miss each other by 1 (x axis at z=0; y axis at z=1): midpoint (0, 0, 0.5)
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[0, :3, :3] = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # looks along +x
    c2w[0, :3, 3] = torch.tensor([-5.0, 0, 0])
    c2w[1, :3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # looks along +y
    c2w[1, :3, 3] = torch.tensor([0.0, -5, 1])
    one = torch.ones(2)
    cams = Cameras(c2w, one, one, one, one, 2, 2)
    assert torch.allclose(N.closest_point_to_axes(cams), torch.tensor([0, 0, 0.5], dtype=torch.float64), atol=1e-3)


def test_camera_rig_normalization():
    cams = _rig((1.0, 2.0, 3.0), dist=6.0)
    norm = N.camera_rig_normalization(cams)
    assert norm.source == "camera_rig" and norm.scale == pytest.approx(3.0, rel=1e-4)
    assert np.allclose(norm.center, (1, 2, 3), atol=1e-4)
    scene = SceneData("rig", Path("x"), "test", {"train": Split(cams, torch.zeros(6, 30, 40, 3))})
    out = normalize_scene(scene)
    assert out.normalized and out.normalization.source == "camera_rig"
    assert torch.allclose(out.split("train").cameras.centers.norm(dim=-1), torch.full((6,), 2.0), atol=1e-4)


def test_carving_masks_dilate():
    m = torch.zeros(1, 7, 9)
    m[0, 3, 4] = 0.9
    out, factor = N.carving_masks(m)
    assert factor == 1 and out.dtype == torch.bool
    assert out[0].sum() == 9 and out[0, 2:5, 3:6].all()  # 3x3 dilation
    big = torch.zeros(2, 600, 500)
    big[1, 100, 200] = 1.0
    out, factor = N.carving_masks(big)
    assert factor == 3 and out.shape == (2, 200, 167) and not out[0].any() and out[1, 33, 66]


def test_project_points_matches_rays_with_distortion():
    cams = _rig((0.0, 0.0, 0.0), n=2)
    cams.distortion = torch.tensor([[-0.1, 0.02, 0.001, -0.002]] * 2)
    px, py = torch.tensor([3.5, 20.0, 37.2]), torch.tensor([2.5, 15.0, 28.0])
    o, d = cams.rays(torch.ones(3, dtype=torch.long), px, py)
    u, v, valid = N.project_points(cams, 1, o + 3.0 * d)
    assert valid.all()
    assert torch.allclose(u, px, atol=1e-3) and torch.allclose(v, py, atol=1e-3)
    _, _, valid = N.project_points(cams, 1, o - 3.0 * d)  # behind the camera
    assert not valid.any()


def test_visual_hull_synthetic(syn):
    norm = estimate_normalization(syn)
    assert norm.source == "visual_hull"
    r = _gt_radius(replace_norm(syn, norm))
    assert r.max() < 1.0 and r.max() > 0.7
    # the hull is tight: scale ~ margin * object radius (0.70 in the world frame)
    assert 1.1 * 0.69 < norm.scale < 1.1 * 0.8
    out = normalize_scene(syn)
    assert out.normalized and out.normalization == norm
    for k in ("train", "test"):
        c0, c1 = syn.split(k).cameras, out.split(k).cameras
        assert torch.allclose(c1.centers, (c0.centers - torch.tensor(norm.center)) / norm.scale, atol=1e-5)
        assert torch.equal(c1.c2w[:, :3, :3], c0.c2w[:, :3, :3])  # no rotation
        assert out.split(k).images is syn.split(k).images
    assert normalize_scene(out) is out  # idempotent
    assert not syn.normalized and syn.normalization is None  # input untouched


def replace_norm(scene: SceneData, norm: Normalization) -> SceneData:
    from dataclasses import replace

    return replace(scene, normalization=norm)


def test_methods_and_errors(syn):
    assert estimate_normalization(syn, "identity") == Normalization(source="identity")
    assert estimate_normalization(syn, "camera_rig").source == "camera_rig"
    with pytest.raises(DataError, match="scale"):
        estimate_normalization(syn, "scale_mat")
    with pytest.raises(DataError, match="unknown normalisation"):
        estimate_normalization(syn, "bogus")
    given = Normalization((1.0, 2.0, 3.0), 5.0, "scale_mat")
    assert estimate_normalization(replace_norm(syn, given)) is given  # auto prefers the format's
    tr = syn.split("train")
    empty = syn.with_splits({"train": Split(tr.cameras, tr.images, torch.zeros_like(tr.masks))})
    with pytest.raises(DataError, match="visual hull is empty"):
        estimate_normalization(empty, "visual_hull")
    no_masks = syn.with_splits({"train": Split(tr.cameras, tr.images)})
    assert estimate_normalization(no_masks).source == "camera_rig"
    with pytest.raises(DataError, match="needs masks"):
        estimate_normalization(no_masks, "visual_hull")


@pytest.mark.parametrize("name", ["glossy_bunny", "two_materials"])
def test_real_gt_mesh_inside_unit_sphere(name):
    scene = normalize_scene(_load(name))
    assert scene.normalization.source == "visual_hull"
    r = _gt_radius(scene)
    assert r.max() < 1.0 and r.max() > 0.5
    assert (scene.split("train").cameras.centers.norm(dim=-1) > 1.0).all()


def test_real_dtu_and_ethiopian_and_fox():
    dtu = normalize_scene(_load("dtu_scan24"))
    assert dtu.normalization.source == "scale_mat"
    assert (dtu.split("train").cameras.centers.norm(dim=-1) > 1.0).all()
    head = normalize_scene(_load("ethiopian_head"))
    assert head.normalization.source == "visual_hull"
    for sp in head.splits.values():
        assert (sp.cameras.centers.norm(dim=-1) > 1.0).all()
    fox = normalize_scene(_load("fox"))
    assert fox.normalization.source == "camera_rig"
    d = torch.cat([sp.cameras.centers.norm(dim=-1) for sp in fox.splits.values()])
    assert (d > 1.0).all() and abs(float(d.median()) - 2.0) < 0.1


def _assert_png(path: Path) -> None:
    assert path.is_file()
    im = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert im.shape[0] > 300 and im.shape[1] > 600
    assert im.std() > 10  # not blank
    assert (np.abs(im - im[0, 0]).sum(-1) > 30).mean() > 0.02  # a fair share of drawn pixels


def test_check_dataset_synthetic(tmp_path):
    from lumisurf.data.check import check_dataset

    out = tmp_path / "sub" / "check.png"
    text = check_dataset(None, out)
    _assert_png(out)
    assert "format: synthetic" in text and "train 40 views" in text and "test 8 views" in text
    assert "image size: 64 x 64" in text and "masks: yes" in text and "distortion: no" in text
    assert "normalisation: visual_hull" in text and "all cameras outside the unit sphere: yes" in text
    assert "inside the image in 40/40 views" in text and "WARN" not in text


def test_check_dataset_glossy_bunny(tmp_path):
    from lumisurf.data.check import check_dataset

    path = shared_dataset("glossy_bunny")
    text = check_dataset(path, tmp_path / "bunny.png")
    _assert_png(tmp_path / "bunny.png")
    assert "format: blender" in text and "train 64 views" in text and "relight 16 views" in text
    assert "inside the image in 64/64 views" in text and "image size: 200 x 200" in text
    assert "WARN" not in text


def test_check_warns_when_camera_inside_sphere(syn, tmp_path):
    from lumisurf.data.check import draw_check_figure, summarize

    scene = normalize_scene(syn, "identity")  # synthetic world frame: cameras at ~3
    shrunk = scene.with_splits(
        {k: Split(sp.cameras.transformed(4.0, torch.zeros(3)), sp.images, sp.masks) for k, sp in scene.splits.items()}
    )
    lines, warns = summarize(shrunk)
    assert any("inside the unit sphere" in w for w in warns)
    assert "all cameras outside the unit sphere: no" in lines
    draw_check_figure(shrunk, tmp_path / "w.png")
    _assert_png(tmp_path / "w.png")
