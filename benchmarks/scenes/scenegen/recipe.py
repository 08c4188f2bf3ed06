"""Seeded scene recipes: ``make_recipe(kind, seed)`` draws every random choice (shape and its parameters,
orientation, size, materials, split, environment maps) into a JSON-able dict; ``geometry.build`` turns
a recipe into meshes without drawing anything, so the same seed always gives the same scene.
"""

from __future__ import annotations

import numpy as np

from scenegen import materials as M
from scenegen.shapes import random_rotation, rot_x, rot_z

KINDS = ("glossy", "two_material")
KIND_CODE = {"glossy": 1, "two_material": 2}
ENV_MAPS = ("studio_small_03_1k.hdr", "adams_place_bridge_1k.hdr", "forest_slope_1k.hdr", "potsdamer_platz_1k.hdr")
SHARED_MESHES = ("glossy_bunny", "glossy_spot", "two_materials")
SINGLE_SHAPES = ("blob", "torus", "trefoil", "rounded_box", "plate", "bowl", "cup")
UNIONS = ("sphere_on_box", "box_fin", "cup_handle", "ringed_sphere")
MESHES = tuple(f"mesh:{m}" for m in SHARED_MESHES)
GLOSSY_SHAPES = SINGLE_SHAPES + UNIONS + MESHES
UPRIGHT = {"bowl", "cup", "sphere_on_box", "box_fin", "cup_handle"} | set(MESHES)


def _r(x) -> float:
    return round(float(x), 4)


def _unit(rng) -> list[float]:
    v = rng.normal(size=3)
    return [_r(c) for c in v / np.linalg.norm(v)]


def _u(rng, lo, hi) -> float:
    return _r(rng.uniform(lo, hi))


def _blob(rng) -> dict:
    k = int(rng.integers(3, 7))
    amp = rng.uniform(0.2, 0.4) * rng.dirichlet(np.ones(k))
    waves = [[_r(a), _u(rng, 2.0, 5.0), *_unit(rng), _u(rng, 0, 2 * np.pi)] for a in amp]
    return {"waves": waves, "axes": [1.0, _u(rng, 0.7, 1.0), _u(rng, 0.6, 1.0)]}


def _box(rng) -> dict:
    half = [1.0, _u(rng, 0.5, 1.0), _u(rng, 0.4, 0.9)]
    return {"half": half, "radius": _r(min(half) * rng.uniform(0.05, 0.3))}


def _plate(rng) -> dict:
    t = _u(rng, 0.02, 0.04)
    return {"half": [1.0, _u(rng, 0.5, 0.9), t], "radius": _r(0.95 * t)}


def _cup(rng) -> dict:
    return {
        "radius": _u(rng, 0.45, 0.6),
        "height": _u(rng, 0.8, 1.3),
        "wall": _u(rng, 0.05, 0.08),
        "bottom": _u(rng, 0.06, 0.12),
    }


def _sphere_on_box(rng) -> dict:
    box = {"half": [_u(rng, 0.45, 0.6), _u(rng, 0.45, 0.6), _u(rng, 0.2, 0.3)], "radius": 0.05}
    r = _u(rng, 0.35, 0.5)
    centre = [_u(rng, -0.1, 0.1), _u(rng, -0.1, 0.1), _r(box["half"][2] + r * rng.uniform(0.6, 0.9))]
    return {"box": box, "sphere": {"radius": r, "centre": centre}}


def _box_fin(rng) -> dict:
    box = {"half": [_u(rng, 0.5, 0.7), _u(rng, 0.3, 0.45), _u(rng, 0.25, 0.35)], "radius": 0.06}
    t = _u(rng, 0.015, 0.03)
    fin = {"half": [_u(rng, 0.3, 0.5), t, _u(rng, 0.3, 0.45)], "radius": _r(0.95 * t)}
    z = box["half"][2] + 0.8 * fin["half"][2]
    return {"box": box, "fin": fin, "fin_centre": [_u(rng, -0.15, 0.15), 0.0, _r(z)], "fin_yaw": _u(rng, -0.5, 0.5)}


def _cup_handle(rng) -> dict:
    cup = _cup(rng)
    major, minor = _r(cup["height"] * rng.uniform(0.25, 0.35)), _u(rng, 0.04, 0.06)
    x = cup["radius"] - cup["wall"] / 2 + major + minor
    return {"cup": cup, "handle": {"major": major, "minor": minor, "centre": [_r(x), 0.0, _r(0.55 * cup["height"])]}}


def _ringed_sphere(rng) -> dict:
    """A thin ring off-centre around a sphere, partly sunk into it."""
    return {
        "sphere": {"radius": 0.6},
        "ring": {
            "major": _u(rng, 0.7, 0.85),
            "minor": _u(rng, 0.05, 0.09),
            "offset": _u(rng, 0.15, 0.3),
            "tilt": _u(rng, 0.25, 0.6),
        },
    }


PARAMS = {
    "blob": _blob,
    "rounded_box": _box,
    "plate": _plate,
    "cup": _cup,
    "torus": lambda rng: {"major": 1.0, "minor": _u(rng, 0.22, 0.45)},
    "trefoil": lambda rng: {"tube": _u(rng, 0.3, 0.5)},
    "bowl": lambda rng: {"outer": 1.0, "wall": _u(rng, 0.05, 0.1), "depth": _u(rng, 0.6, 1.0)},
    "sphere_on_box": _sphere_on_box,
    "box_fin": _box_fin,
    "cup_handle": _cup_handle,
    "ringed_sphere": _ringed_sphere,
}


def _orientation(rng, shape: str) -> list[list[float]]:
    """Upright shapes: random turn about z after a tilt of at most ~20 deg; others: uniform rotation."""
    if shape in UPRIGHT:
        R = rot_z(rng.uniform(0, 2 * np.pi)) @ rot_x(rng.uniform(-0.35, 0.35))
    else:
        R = random_rotation(rng)
    return R.tolist()


def _split(rng, shape: str) -> dict:
    if shape in UNIONS:
        return {"mode": "parts"}
    if shape == "mesh:two_materials":
        return {"mode": "file", "file": "two_materials/gt_mesh_face_matid.npy"}
    return {"mode": "plane", "normal": _unit(rng), "quantile": _u(rng, 0.35, 0.65)}


def shape_pool(kind: str) -> tuple[str, ...]:
    """Shapes a kind draws from; two-material scenes list the unions twice (split by parts ~44 %)."""
    return GLOSSY_SHAPES if kind == "glossy" else UNIONS + UNIONS + SINGLE_SHAPES + MESHES


def pick_shape(kind: str, seed: int) -> str:
    """Shape of scene ``seed``: seeds are taken in blocks of len(pool), each block a seeded permutation of
    the pool, so any len(pool) consecutive seeds from a block start cover every entry once (suites of
    8 scenes get 8 different shapes)."""
    pool = shape_pool(kind)
    block, pos = divmod(seed, len(pool))
    return pool[int(np.random.default_rng([block, KIND_CODE[kind], 7]).permutation(len(pool))[pos])]


def make_recipe(kind: str, seed: int) -> dict:
    """Every random choice of scene ``seed`` of ``kind`` ('glossy' | 'two_material')."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng([int(seed), KIND_CODE[kind]])
    shape = pick_shape(kind, int(seed))
    params = PARAMS[shape](rng) if shape in PARAMS else {"source": shape.split(":", 1)[1] + "/gt_mesh.ply"}
    recipe = {
        "kind": kind,
        "seed": int(seed),
        "shape": shape,
        "shape_params": params,
        "rotation": _orientation(rng, shape),
        "fit_radius": _u(rng, 0.8, 0.9),
    }
    if kind == "glossy":
        recipe["materials"], recipe["combo"], recipe["split"] = [M.glossy_material(rng)], None, None
    else:
        recipe["combo"], recipe["materials"] = M.material_pair(rng)
        recipe["split"] = _split(rng, shape)
    env = int(rng.integers(len(ENV_MAPS)))
    others = [e for k, e in enumerate(ENV_MAPS) if k != env]
    recipe["env_map"], recipe["relight_env_map"] = ENV_MAPS[env], others[int(rng.integers(len(others)))]
    return recipe


def describe(recipe: dict) -> str:
    """One line: shape, materials, split, env maps."""
    mats = ", ".join(f"{m['id']}:{m['name']}(r={m['roughness']})" for m in recipe["materials"])
    split = recipe["split"]["mode"] if recipe["split"] else "-"
    return (
        f"{recipe['kind']} seed {recipe['seed']}: {recipe['shape']}; {mats}; split {split}; "
        f"env {recipe['env_map']} / relight {recipe['relight_env_map']}"
    )
