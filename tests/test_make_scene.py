"""benchmarks/scenes/make_scene.py: seeded Mitsuba scenes in the shared Blender + GT format.

Rendering tests need mitsuba (a benchmark dependency) and ../shared/data/envmaps and are skipped without
them; a tiny two-material scene (32x32, 4 spp, 4 + 2 + 2 views) is rendered twice (same seed).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scenes" / "make_scene.py"
TINY = dict(res=32, spp=4, n_train=4, n_test=2, n_relight=2)


@pytest.fixture(scope="module")
def ms():
    spec = importlib.util.spec_from_file_location("make_scene", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scenes(ms, tmp_path_factory):
    """The same tiny two-material scene rendered twice: (first, second)."""
    pytest.importorskip("mitsuba", reason="make_scene renders with mitsuba (pip install mitsuba)")
    if not (SHARED_DATA / "envmaps").is_dir():
        pytest.skip(f"{SHARED_DATA / 'envmaps'} is absent")
    root = tmp_path_factory.mktemp("scenes")
    return tuple(ms.make_scene("two_material", 0, root / name, **TINY, progress=False) for name in ("a", "b"))


def test_recipe_and_cameras_are_seeded(ms):
    from scenegen.cameras import sample_cameras
    from scenegen.recipe import make_recipe

    assert make_recipe("glossy", 5) == make_recipe("glossy", 5)
    assert make_recipe("glossy", 5) != make_recipe("glossy", 6)
    assert make_recipe("two_material", 5)["split"] is not None
    train, test = sample_cameras(3, 4, 2)
    assert np.array_equal(train, sample_cameras(3, 4, 2)[0]) and test.shape == (2, 4, 4)
    bunny = SHARED_DATA / "glossy_bunny" / "transforms_train.json"
    if bunny.is_file():  # seed 0 is exactly the shared scenes' camera layout
        want = np.array([f["transform_matrix"] for f in json.loads(bunny.read_text())["frames"]])
        assert np.allclose(sample_cameras(0, 64, 16)[0], want, atol=1e-12)


def test_mitsuba_missing_exits_2(ms, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "mitsuba", None)
    assert ms.main(["--kind", "glossy", "--seed", "1", "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip() == "make_scene needs mitsuba: pip install mitsuba"
    assert not (tmp_path / "s").exists()


def test_files_and_encodings(ms, scenes):
    root = scenes[0]
    missing = [f for f in ms.expected_files("two_material", 0, ms.scene_params(**TINY)) if not (root / f).is_file()]
    assert not missing and (root / "meta.json").is_file()
    rgba = Image.open(root / "train" / "r_0.png")
    assert rgba.mode == "RGBA" and rgba.size == (32, 32)
    assert Image.open(root / "train" / "r_0_albedo.png").mode == "RGB"
    for key in ("roughness", "metallic", "matid"):
        assert Image.open(root / "train" / f"r_0_{key}.png").mode == "L"
    from lumisurf.data.images import read_png16

    normal = read_png16(root / "test" / "r_1_normal.png")
    depth = np.load(root / "test" / "r_1_depth.npy")
    assert normal.dtype == np.uint16 and normal.shape == (32, 32, 3)
    assert depth.dtype == np.float16 and depth.shape == (32, 32)
    hit = depth > 0
    assert hit.any() and np.array_equal(hit, (normal != 0).any(-1))
    n = normal[hit].astype(np.float64) / 65535 * 2 - 1
    assert np.allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-3)
    matid = np.asarray(Image.open(root / "test" / "r_1_matid.png"))
    assert set(np.unique(matid)) <= {0, 1, 2} and np.array_equal(matid > 0, hit)
    import trimesh

    faces = len(trimesh.load(root / "gt_mesh.ply", process=False).faces)
    face_ids = np.load(root / "gt_mesh_face_matid.npy")
    assert face_ids.dtype == np.uint8 and face_ids.shape == (faces,) and set(np.unique(face_ids)) == {1, 2}


def test_json_keys(scenes):
    root = scenes[0]
    test = json.loads((root / "transforms_test.json").read_text())
    relight = json.loads((root / "transforms_relight.json").read_text())
    for tf in (test, relight):
        assert set(tf) == {"camera_angle_x", "env_map", "frames"}
        assert tf["camera_angle_x"] == pytest.approx(np.radians(36.0))
    assert test["frames"][1]["file_path"] == "./test/r_1" and relight["frames"][1]["file_path"] == "./relight/r_1"
    assert [f["transform_matrix"] for f in relight["frames"]] == [f["transform_matrix"] for f in test["frames"]]
    assert np.asarray(test["frames"][0]["transform_matrix"]).shape == (4, 4)
    meta = json.loads((root / "meta.json").read_text())
    shared = SHARED_DATA / "two_materials" / "meta.json"
    want = (
        set(json.loads(shared.read_text()))
        if shared.is_file()
        else {"scene", "render", "lighting", "materials", "cameras", "ground_truth", "checks"}
    )
    assert want <= set(meta) and meta["generator"]["seed"] == 0
    assert [m["id"] for m in meta["materials"]] == [1, 2]
    assert meta["lighting"]["env_map"] == test["env_map"] != relight["env_map"] == meta["lighting"]["relight_env_map"]
    checks = meta["checks"]["independent_from_files"]["result"]
    assert checks["train"]["within1px_min"] == 1.0 and checks["max_vertex_radius"] <= 0.9 + 1e-6


def test_same_seed_same_files(scenes):
    a, b = scenes
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "meta.json":
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ma, mb = (json.loads((d / "meta.json").read_text()) for d in (a, b))
    for m in (ma, mb):
        m.pop("timings_s"), m.pop("scene")
    assert ma == mb


def test_existing_scene_is_skipped(ms, scenes, capsys):
    assert ms.make_scene("two_material", 0, scenes[0], **TINY, progress=False) == scenes[0]
    assert "skipped" in capsys.readouterr().out
    with pytest.raises(FileExistsError):
        ms.make_scene("two_material", 1, scenes[0], **TINY, progress=False)


def test_lumisurf_reader_loads_it(scenes):
    from lumisurf.data.readers import load_scene

    scene = load_scene(scenes[0])
    assert scene.format == "blender" and scene.gt_mesh is not None
    assert {k: len(s.cameras) for k, s in scene.splits.items()} == {"train": 4, "test": 2, "relight": 2}
    test = scene.splits["test"]
    assert tuple(test.images.shape[1:3]) == (32, 32) and test.masks is not None
    assert test.normals is not None and tuple(test.normals.shape) == (2, 32, 32, 3)
    assert scene.meta["env_map"] != scene.meta["relight_env_map"]
    from lumisurf.shading.lighting import find_env_file

    for key in ("env_map", "relight_env_map"):  # copies beside the scene, as Stage II / relighting look them up
        found = find_env_file(scenes[0], scene.meta[key])
        assert found.read_bytes() == (SHARED_DATA / "envmaps" / scene.meta[key]).read_bytes()
