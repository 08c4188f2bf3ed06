"""Mitsuba 3 (``scalar_rgb``) scenes and renders: the path-traced RGBA image of a view and its GT maps.

GT maps come from Mitsuba's ``aov`` integrator with ONE ray through each pixel centre (``stratified``
sampler, 1 sample, no jitter, box filter): world hit position (-> z-depth), shading normal, shape index
(-> material id, roughness, metallic) and the BSDF albedo (the principled base color, textures included).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scenegen.cameras import CAMERA_ANGLE_X
from scenegen.geometry import Geometry

MITSUBA_MISSING = "make_scene needs mitsuba: pip install mitsuba"
VARIANT = "scalar_rgb"
MAX_DEPTH = 8
GL_TO_MITSUBA = np.diag([-1.0, 1.0, -1.0, 1.0])  # Mitsuba cameras look along +z with +x to the image's left
AOVS = "pos:position,nrm:sh_normal,sid:shape_index,alb:albedo"


class MitsubaMissing(ImportError):
    pass


def mitsuba():
    """The mitsuba module set to ``scalar_rgb``; :class:`MitsubaMissing` when it is not installed."""
    try:
        import mitsuba as mi
    except ImportError:
        raise MitsubaMissing(MITSUBA_MISSING) from None
    if mi.variant() != VARIANT:
        mi.set_variant(VARIANT)
    return mi


def _bsdf(mi, mat: dict):
    base = (
        {"type": "mesh_attribute", "name": "vertex_color"}
        if mat["base_color"] == "texture"
        else {"type": "rgb", "value": [float(c) for c in mat["base_color"]]}
    )
    return mi.load_dict(
        {
            "type": "principled",
            "base_color": base,
            "metallic": float(mat["metallic"]),
            "roughness": float(mat["roughness"]),
            "specular": float(mat["specular"]),
        }
    )


def _mesh(mi, part, bsdf):
    import drjit as dr

    props = mi.Properties()
    props["bsdf"] = bsdf
    mesh = mi.Mesh(part.label, len(part.V), len(part.F), has_vertex_normals=True, props=props)
    params = mi.traverse(mesh)
    params["vertex_positions"] = dr.scalar.ArrayXf(part.V.astype(np.float32).ravel())
    params["faces"] = dr.scalar.ArrayXu(part.F.astype(np.uint32).ravel())
    params["vertex_normals"] = dr.scalar.ArrayXf(part.N.astype(np.float32).ravel())
    params.update()
    if part.colors is not None:
        mesh.add_attribute("vertex_color", 3, dr.scalar.ArrayXf(part.colors.astype(np.float32).ravel()))
    return mesh


def build_scene(geo: Geometry, materials: list[dict], env_path: Path):
    """Scene: the parts (``part_<k>`` in order), env map rotated +90 deg about x (image top = world +z)."""
    mi = mitsuba()
    mats = {m["id"]: m for m in materials}
    desc = {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": MAX_DEPTH, "hide_emitters": True},
        "env": {
            "type": "envmap",
            "filename": str(env_path),
            "scale": 1.0,
            "to_world": mi.ScalarTransform4f().rotate([1.0, 0.0, 0.0], 90.0),
        },
    }
    for k, part in enumerate(geo.parts):
        desc[f"part_{k:02d}"] = _mesh(mi, part, _bsdf(mi, mats[part.matid]))
    scene = mi.load_dict(desc)
    order = [s.id() for s in scene.shapes()]
    expected = [f"part_{k:02d}" for k in range(len(geo.parts))]
    if order != expected:  # the shape_index AOV k + 1 must be geo.parts[k]
        raise RuntimeError(f"Mitsuba reordered the shapes: {order} != {expected}")
    return scene


def _sensor(mi, c2w: np.ndarray, res: int, spp: int, centre_ray: bool, seed: int = 0):
    sampler = (
        {"type": "stratified", "sample_count": 1, "jitter": False}
        if centre_ray
        else {"type": "independent", "sample_count": spp, "seed": seed}
    )
    return mi.load_dict(
        {
            "type": "perspective",
            "fov": math.degrees(CAMERA_ANGLE_X),
            "fov_axis": "x",
            "to_world": mi.ScalarTransform4f((c2w @ GL_TO_MITSUBA).tolist()),
            "sampler": sampler,
            "film": {
                "type": "hdrfilm",
                "width": res,
                "height": res,
                "rfilter": {"type": "box"},
                "pixel_format": "rgba",
                "sample_border": False,
            },
        }
    )


def render_rgba(scene, c2w: np.ndarray, res: int, spp: int, seed: int) -> np.ndarray:
    """Path-traced linear RGBA [H, W, 4] float32 (RGB premultiplied by coverage, as Mitsuba stores it)."""
    mi = mitsuba()
    # the seed goes to the sampler AND to render(), as for the shared scenes (their views reproduce)
    img = mi.render(scene, sensor=_sensor(mi, c2w, res, spp, False, seed), spp=spp, seed=seed)
    return np.array(img, dtype=np.float32)


_AOV_INTEGRATOR = {}


def _aov_integrator(mi):
    if "aov" not in _AOV_INTEGRATOR:
        _AOV_INTEGRATOR["aov"] = mi.load_dict({"type": "aov", "aovs": AOVS})
    return _AOV_INTEGRATOR["aov"]


def gt_maps(scene, geo: Geometry, materials: list[dict], c2w: np.ndarray, res: int) -> dict:
    """Pixel-centre GT: hit [H,W] bool, depth (z), normal (world), albedo (linear), roughness, metallic, matid."""
    mi = mitsuba()
    img = np.array(
        mi.render(scene, integrator=_aov_integrator(mi), sensor=_sensor(mi, c2w, res, 1, True), spp=1, seed=0),
        dtype=np.float64,
    )
    pos, nrm, sid, alb = img[..., 0:3], img[..., 3:6], img[..., 6], img[..., 7:10]
    shape = np.rint(sid).astype(np.int64)
    hit = shape > 0
    part_ids = np.array([0] + [p.matid for p in geo.parts], np.int64)
    matid = part_ids[np.clip(shape, 0, len(geo.parts))]
    by_id = {m["id"]: m for m in materials}
    rough = np.array([0.0] + [float(by_id[k]["roughness"]) for k in part_ids[1:]], np.float64)
    metal = np.array([0.0] + [float(by_id[k]["metallic"]) for k in part_ids[1:]], np.float64)
    idx = np.clip(shape, 0, len(geo.parts))
    depth = (pos - c2w[:3, 3]) @ (-c2w[:3, 2])
    return {
        "hit": hit,
        "depth": np.where(hit, depth, 0.0),
        "normal": np.where(hit[..., None], nrm, 0.0),
        "albedo": np.where(hit[..., None], alb, 0.0),
        "roughness": rough[idx],
        "metallic": metal[idx],
        "matid": np.where(hit, matid, 0),
        "position": pos,
    }
