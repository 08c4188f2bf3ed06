"""Seeded random ``principled`` materials and procedural per-vertex albedo patterns.

A material is a dict in the ``meta.json`` form: ``id, name, base_color ([r, g, b] linear or "texture"),
metallic, roughness, specular`` (+ ``pattern`` for textured ones, moved to meta's ``texture``).
"""

from __future__ import annotations

import colorsys

import numpy as np

SPECULAR = 0.5
GLOSSY_KINDS = ("metal", "glossy_dielectric", "rough_dielectric", "textured_dielectric")
GLOSSY_WEIGHTS = (0.35, 0.25, 0.15, 0.25)
TWO_MATERIAL_COMBOS = ("metal+dielectric", "two_metals", "two_dielectrics")


def _r(x: float) -> float:
    return round(float(x), 4)


def _hsv(rng: np.random.Generator, sat, val) -> list[float]:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
    return [_r(c) for c in rgb]


def metal(rng, mid: int, roughness=(0.05, 0.4)) -> dict:
    """metallic 1, colored: tinted bright base color (linear RGB)."""
    return {
        "id": mid,
        "name": "metal",
        "base_color": _hsv(rng, (0.0, 0.6), (0.6, 1.0)),
        "metallic": 1.0,
        "roughness": _r(rng.uniform(*roughness)),
        "specular": SPECULAR,
    }


def dielectric(rng, mid: int, roughness=(0.1, 0.4), name="glossy_dielectric") -> dict:
    # value <= 0.6: studio_small_03 (mean radiance ~2.2) saturates brighter diffuse albedos
    return {
        "id": mid,
        "name": name,
        "base_color": _hsv(rng, (0.3, 0.9), (0.15, 0.6)),
        "metallic": 0.0,
        "roughness": _r(rng.uniform(*roughness)),
        "specular": SPECULAR,
    }


def textured(rng, mid: int) -> dict:
    """Glossy dielectric whose base color is a smooth procedural pattern of two colors by position."""
    kind = ["stripes", "checker", "rings"][int(rng.integers(3))]
    axis = rng.normal(size=3)
    pattern = {
        "kind": kind,
        "colors": [_hsv(rng, (0.4, 0.9), (0.35, 0.6)), _hsv(rng, (0.0, 0.5), (0.03, 0.2))],
        "period": _r(rng.uniform(0.18, 0.4)),
        "axis": [_r(a) for a in axis / np.linalg.norm(axis)],
        "sharpness": _r(rng.uniform(3.0, 6.0)),
    }
    return {
        "id": mid,
        "name": f"textured_{kind}",
        "base_color": "texture",
        "metallic": 0.0,
        "roughness": _r(rng.uniform(0.1, 0.5)),
        "specular": SPECULAR,
        "pattern": pattern,
    }


def glossy_material(rng) -> dict:
    kind = GLOSSY_KINDS[int(rng.choice(len(GLOSSY_KINDS), p=GLOSSY_WEIGHTS))]
    if kind == "metal":
        return metal(rng, 1)
    if kind == "glossy_dielectric":
        return dielectric(rng, 1)
    if kind == "rough_dielectric":
        return dielectric(rng, 1, (0.5, 0.9), "rough_dielectric")
    return textured(rng, 1)


def _far_color(rng, make, other: list[float], tries: int = 20) -> dict:
    """A material from ``make`` whose base color differs clearly from ``other``."""
    for _ in range(tries):
        m = make()
        if np.abs(np.subtract(m["base_color"], other)).sum() > 0.5:
            break
    return m


def material_pair(rng) -> tuple[str, list[dict]]:
    """Two materials (ids 1 and 2) that differ clearly: metal + dielectric, two metals, two dielectrics."""
    combo = TWO_MATERIAL_COMBOS[int(rng.integers(len(TWO_MATERIAL_COMBOS)))]
    if combo == "metal+dielectric":
        a = metal(rng, 1)
        b = dielectric(rng, 2, (0.1, 0.9), "dielectric")
    elif combo == "two_metals":
        a = metal(rng, 1, (0.05, 0.15))
        b = _far_color(rng, lambda: metal(rng, 2, (0.25, 0.4)), a["base_color"])
        a["name"], b["name"] = "smooth_metal", "rough_metal"
    else:
        a = dielectric(rng, 1, (0.1, 0.6))
        b = _far_color(rng, lambda: dielectric(rng, 2, (0.1, 0.6)), a["base_color"])
    if rng.uniform() < 0.5:  # which part/side gets which material
        a, b = b, a
        a["id"], b["id"] = 1, 2
    if combo == "two_dielectrics":
        a["name"], b["name"] = "dielectric_1", "dielectric_2"
    return combo, [a, b]


def pattern_colors(pattern: dict, P: np.ndarray) -> np.ndarray:
    """Linear RGB [n, 3] of the pattern at world points P [n, 3] (smooth edges: tanh of a sine)."""
    k = 2 * np.pi / pattern["period"]
    axis = np.asarray(pattern["axis"])
    if pattern["kind"] == "stripes":
        s = np.sin(k * (P @ axis))
    elif pattern["kind"] == "checker":
        s = np.sin(k * P[:, 0]) * np.sin(k * P[:, 1]) * np.sin(k * P[:, 2])
        s = np.sign(s) * np.abs(s) ** (1 / 3)
    else:  # rings around the axis through the origin
        radial = np.linalg.norm(P - np.outer(P @ axis, axis), axis=1)
        s = np.sin(k * radial)
    w = 0.5 + 0.5 * np.tanh(pattern["sharpness"] * s)
    c0, c1 = (np.asarray(c, np.float64) for c in pattern["colors"])
    return (w[:, None] * c0 + (1 - w[:, None]) * c1).astype(np.float32)
