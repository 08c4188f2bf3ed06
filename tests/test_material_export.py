"""Tests for lumisurf.mesh.material_export / uv_bake: PLY properties, baked textures, OBJ, GLB, Mitsuba XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import trimesh
from PIL import Image

from lumisurf.errors import LumisurfError
from lumisurf.mesh.material_export import export_materials, scene_files, vertex_materials
from lumisurf.mesh.uv_bake import UVAtlas, dilate, linear_to_srgb, rasterize_uv, to_uint8

SIZE = 128


def analytic_materials(p: np.ndarray) -> dict[str, np.ndarray]:
    n = len(p)
    return {
        "albedo": np.stack([0.5 + 0.5 * p[:, 0], np.full(n, 0.3), np.full(n, 0.2)], axis=1),
        "roughness": 0.2 + 0.3 * (p[:, 2] > 0),
        "metallic": (p[:, 1] > 0).astype(np.float32),
        "material_prob": np.stack([p[:, 0] > 0, p[:, 0] <= 0], axis=1).astype(np.float32),
        "material_id": (p[:, 0] > 0).astype(np.int64),
    }


def bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample image [H, W, C] at trimesh/OBJ uv [N, 2] (v up), texel centres at +0.5."""
    h, w = image.shape[:2]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1.0 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=3)


@pytest.fixture(scope="module")
def exported(sphere, tmp_path_factory):
    out = tmp_path_factory.mktemp("materials")
    env = out.parent / "env.hdr"
    env.write_bytes(b"#?RADIANCE\n")  # only its existence matters here
    paths = export_materials(
        out, sphere.vertices, sphere.faces, analytic_materials, texture_size=SIZE, env_map=env, progress=False
    )
    return paths, env


def test_srgb_and_uint8_hand_values():
    np.testing.assert_allclose(
        linear_to_srgb(np.array([0.0, 0.002, 0.5, 1.0])), [0.0, 0.02584, 0.735357, 1.0], atol=1e-5
    )
    assert to_uint8(np.array([-0.1, 0.5, 2.0])).tolist() == [0, 128, 255]


def test_rasterize_single_triangle_barycentrics():
    # right triangle covering the lower-left half of a 4x4 texture (image convention, v down)
    atlas = UVAtlas(np.arange(3), np.array([[0, 1, 2]]), np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    s = rasterize_uv(atlas, 4, 4, margin=0.0)
    rows, cols = s.texel // 4, s.texel % 4
    assert set(zip(rows.tolist(), cols.tolist())) == {(r, c) for r in range(4) for c in range(4) if r + c <= 3}
    np.testing.assert_allclose(s.bary.sum(1), 1.0)
    # barycentric of vertex 1 (u=1) is the texel centre's u, vertex 2's its v
    np.testing.assert_allclose(s.bary[:, 1], (cols + 0.5) / 4)
    np.testing.assert_allclose(s.bary[:, 2], (rows + 0.5) / 4)


def test_dilate_fills_neighbours_then_mean():
    img = np.zeros((3, 5, 1))
    img[1, 0, 0] = 2.0
    mask = np.zeros((3, 5), bool)
    mask[1, 0] = True
    out = dilate(img, mask, iterations=1)
    assert out[0, 1, 0] == 2.0 and out[2, 4, 0] == 2.0  # grown texel and mean-filled far texel


def test_vertex_materials_chunks_and_validates(sphere):
    full = vertex_materials(sphere.vertices, analytic_materials)
    chunked = vertex_materials(sphere.vertices, analytic_materials, chunk=7)
    for key in full:
        np.testing.assert_array_equal(full[key], chunked[key])
    with pytest.raises(LumisurfError, match="metallic"):
        vertex_materials(sphere.vertices, lambda p: {"albedo": p, "roughness": p[:, 0]})


def test_ply_vertex_properties_read_back(exported, sphere):
    paths, _ = exported
    mesh = trimesh.load(paths["ply"], process=False)
    data = mesh.metadata["_ply_raw"]["vertex"]["data"]
    want = analytic_materials(sphere.vertices.astype(np.float32))
    np.testing.assert_array_equal(mesh.faces, sphere.faces)
    np.testing.assert_allclose(mesh.vertices, sphere.vertices, atol=1e-6)
    np.testing.assert_allclose(data["roughness"], want["roughness"], atol=1e-6)
    np.testing.assert_allclose(data["metallic"], want["metallic"], atol=1e-6)
    for i, c in enumerate("rgb"):
        np.testing.assert_allclose(data[f"albedo_{c}"], want["albedo"][:, i], atol=1e-6)
    for k in range(2):
        np.testing.assert_allclose(data[f"material_prob_{k}"], want["material_prob"][:, k], atol=1e-6)
    assert "material_prob_2" not in data.dtype.names
    np.testing.assert_array_equal(data["material_id"], want["material_id"])
    srgb = linear_to_srgb(want["albedo"]) * 255
    assert np.abs(mesh.visual.vertex_colors[:, :3] - srgb).max() <= 1.0


def test_obj_texture_matches_albedo_at_vertices(exported):
    paths, _ = exported
    assert "map_Pr roughness.png" in paths["mtl"].read_text()
    mesh = trimesh.load(paths["obj"], process=False)
    assert mesh.visual.kind == "texture" and mesh.visual.material.image is not None
    uv = mesh.visual.uv
    assert uv.min() >= 0 and uv.max() <= 1
    tex = np.asarray(mesh.visual.material.image.convert("RGB"))
    assert tex.shape == (SIZE, SIZE, 3)
    want = analytic_materials(mesh.vertices.astype(np.float32))
    err = np.abs(bilinear(tex, uv) - linear_to_srgb(want["albedo"]) * 255).max(axis=1)
    assert (err <= 3).mean() > 0.95
    # scalar maps away from their discontinuities (z = 0 for roughness, y = 0 for metallic)
    rough = bilinear(np.asarray(Image.open(paths["roughness"]))[..., None], uv)[:, 0] / 255
    metal = bilinear(np.asarray(Image.open(paths["metallic"]))[..., None], uv)[:, 0] / 255
    far_z, far_y = np.abs(mesh.vertices[:, 2]) > 0.15, np.abs(mesh.vertices[:, 1]) > 0.15
    assert (np.abs(rough - want["roughness"])[far_z] < 2 / 255).mean() > 0.95
    assert (np.abs(metal - want["metallic"])[far_y] < 2 / 255).mean() > 0.95


def test_glb_has_pbr_textures_in_gltf_layout(exported):
    paths, _ = exported
    mesh = trimesh.load(paths["glb"], force="mesh")
    mat = mesh.visual.material
    assert isinstance(mat, trimesh.visual.material.PBRMaterial)
    assert mat.baseColorTexture is not None and mat.metallicRoughnessTexture is not None
    mr = np.asarray(mat.metallicRoughnessTexture.convert("RGB"))
    np.testing.assert_array_equal(mr[..., 1], np.asarray(Image.open(paths["roughness"])))
    np.testing.assert_array_equal(mr[..., 2], np.asarray(Image.open(paths["metallic"])))
    tex = np.asarray(mat.baseColorTexture.convert("RGB"))
    want = linear_to_srgb(analytic_materials(mesh.vertices.astype(np.float32))["albedo"]) * 255
    assert (np.abs(bilinear(tex, mesh.visual.uv) - want).max(axis=1) <= 3).mean() > 0.95


def test_scene_xml_parses_and_names_existing_files(exported):
    paths, env = exported
    root = ET.parse(paths["xml"]).getroot()
    assert root.tag == "scene" and root.get("version") == "3.0.0"
    bsdf = root.find("bsdf[@type='principled']")
    raw = {t.get("name"): t.find("boolean[@name='raw']").get("value") for t in bsdf.iter("texture")}
    assert raw == {"base_color": "false", "roughness": "true", "metallic": "true"}
    assert root.find("shape[@type='obj']/string").get("value") == "mesh.obj"
    emitter = root.find("emitter[@type='envmap']/string").get("value")
    assert emitter == "../env.hdr" and root.find("sensor[@type='perspective']") is not None
    files = scene_files(paths["xml"])
    assert len(files) == 5 and all(f.exists() for f in files)
    assert files[-1].resolve() == env.resolve()


def test_refuses_to_overwrite_without_force(exported, sphere):
    paths, _ = exported
    before = paths["ply"].read_bytes()
    with pytest.raises(LumisurfError, match="refusing to overwrite"):
        export_materials(
            paths["ply"].parent, sphere.vertices, sphere.faces, analytic_materials, texture_size=SIZE, progress=False
        )
    assert paths["ply"].read_bytes() == before
