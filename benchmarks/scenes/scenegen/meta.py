"""``meta.json`` of a generated scene, in the structure of the shared Mitsuba scenes' meta.json."""

from __future__ import annotations

import numpy as np

from scenegen.cameras import DIST_RANGE, Z_RANGE
from scenegen.recipe import UNIONS
from scenegen.render import MAX_DEPTH

ENV_SOURCE = "pmndrs/drei-assets hdri/ (Poly Haven, CC0)"
ENV_ORIENTATION = (
    "lat-long image, top row = world +z; for a world direction d=(x,y,z) pointing towards the "
    "environment: u = (atan2(x, y) / (2 pi)) mod 1 (column = u * width), v = acos(z) / pi "
    "(row = v * height, row 0 = top). Equivalent to Mitsuba envmap with to_world = "
    "rotate(x axis, +90 deg)."
)
BSDF = (
    'Mitsuba 3 "principled" (Disney-style): base_color (linear RGB; texture = per-vertex linear RGB '
    "via mesh_attribute 'vertex_color'), metallic, roughness (GGX alpha = roughness^2), specular "
    "(0.5 = IOR 1.5 F0 0.04); other parameters default"
)
IMAGES = (
    "r_<i>.png: RGBA 8-bit, RGB sRGB-encoded (clipped at 1), straight alpha = pixel coverage "
    "(box filter), background transparent (environment not visible)"
)
GROUND_TRUTH = {
    "sampling": "one ray through each pixel centre (no anti-aliasing); background = 0",
    "normal": "r_<i>_normal.png 16-bit RGB, world-space unit shading normal n = png/65535*2-1 (interpolated "
    "vertex normals used by the renderer); (0,0,0) background",
    "depth": "r_<i>_depth.npy float16 (H,W), z-depth = distance along the camera -z axis (ray distance = "
    "depth / cos angle to the optical axis); 0 = background",
    "mask": "depth > 0 (or normal png != 0) gives the pixel-centre hit mask",
    "albedo": "r_<i>_albedo.png 8-bit sRGB-encoded base_color (linear = sRGB decode)",
    "roughness": "r_<i>_roughness.png 8-bit grey, roughness = value/255 (exact values under materials)",
    "metallic": "r_<i>_metallic.png 8-bit grey, metallic = value/255",
}
MATID = "r_<i>_matid.png 8-bit grey, 0 = background, k = materials[id=k]"
GT_MESH = "gt_mesh.ply in the world frame"
GT_MESH_MATID = "; gt_mesh_face_matid.npy: uint8 material id per face"
GT_MESH_UNION = (
    "; union of closed parts: faces of one part lying inside another (all three vertices inside) "
    "were removed (approximate union); the renderer saw the full closed parts"
)


def _mesh_source(recipe: dict):
    shape = recipe["shape"]
    if shape.startswith("mesh:"):
        return ["shared data", recipe["shape_params"]["source"]]
    return f"procedural {shape} (parameters in generator.recipe.shape_params; frame of scenegen/geometry.py)"


def _materials(recipe: dict) -> tuple[list[dict], dict | None]:
    mats, texture = [], None
    for m in recipe["materials"]:
        mats.append({k: m[k] for k in ("id", "name", "base_color", "metallic", "roughness", "specular")})
        if "pattern" in m:
            texture = {
                "material_id": m["id"],
                "kind": "per-vertex linear RGB (Mitsuba mesh_attribute 'vertex_color'), interpolated over triangles",
                "pattern": m["pattern"],
            }
    return mats, texture


def build_meta(
    name: str,
    recipe: dict,
    params: dict,
    mesh_to_world: np.ndarray,
    renderer: str,
    timings: dict,
    checks: dict | None,
    two_material: bool,
) -> dict:
    mats, texture = _materials(recipe)
    seed = recipe["seed"]
    return {
        "scene": name,
        "renderer": renderer,
        "render": {
            "width": params["res"],
            "height": params["res"],
            "spp": params["spp"],
            "max_depth": MAX_DEPTH,
            "rfilter": "box",
            "hide_emitters": True,
            "sampler": "independent",
            "seeds": "train i, test 100000+i, relight 200000+i",
        },
        "lighting": {
            "env_map": recipe["env_map"],
            "relight_env_map": recipe["relight_env_map"],
            "source": ENV_SOURCE,
            "env_scale": 1.0,
            "env_orientation": ENV_ORIENTATION,
            "files": "envmaps/<name>: byte copies of ../shared/data/envmaps/<name>",
        },
        "world": "right-handed, +z up, scene units; object fits in a sphere of radius "
        f"{recipe['fit_radius']:.2f} at the origin",
        "mesh_source": _mesh_source(recipe),
        "mesh_to_world": mesh_to_world.tolist(),
        "mesh_to_world_note": "world = mesh_to_world @ [v_source, 1] (rotate, centre the bbox, scale to fit_radius)",
        "materials": mats,
        "bsdf": BSDF,
        "texture": texture,
        "cameras": {
            "convention": "transform_matrix = camera-to-world, OpenGL/Blender (x right, y up, camera looks along -z)",
            "intrinsics": "f = 0.5 * W / tan(0.5 * camera_angle_x) pixels, principal point (W/2, H/2), square "
            "pixels, no distortion; pixel (col,row) centre at (col+0.5,row+0.5); row increases downward",
            "sampling": f"eye uniform on the sphere band z/|eye| in [{Z_RANGE[0]}, {Z_RANGE[1]}] (~27% below the "
            f"horizon), |eye| uniform in [{DIST_RANGE[0]}, {DIST_RANGE[1]}], looking at the origin with "
            "world +z up; numpy default_rng(seed)",
            "seed": seed,
            "n_train": params["n_train"],
            "n_test": params["n_test"],
            "relight": f"transforms_relight.json uses exactly the first {params['n_relight']} test cameras, "
            "lit by relight_env_map",
        },
        "images": IMAGES,
        "ground_truth": {
            **GROUND_TRUTH,
            "matid": MATID if two_material else None,
            "gt_mesh": GT_MESH
            + (GT_MESH_MATID if two_material else "")
            + (GT_MESH_UNION if recipe["shape"] in UNIONS else ""),
        },
        "timings_s": timings,
        "checks": checks,
        "generator": {
            "script": "benchmarks/scenes/make_scene.py",
            "kind": recipe["kind"],
            "seed": seed,
            "params": params,
            "recipe": recipe,
        },
    }
