"""Export a mesh with its materials: per-vertex PLY, UV-textured OBJ/MTL and GLB, and a Mitsuba 3 scene.

``material_fn(points [N, 3] float32, world frame) -> {"albedo": [N, 3] linear in [0, 1],
"roughness": [N], "metallic": [N], ...extras}``. Roughness is the perceptual one (GGX alpha =
roughness^2), the convention of glTF and of Mitsuba's ``principled`` BSDF. Extras (e.g.
``material_prob`` [N, K], ``material_id`` [N]) go to the PLY only.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from tqdm.auto import tqdm

from lumisurf.errors import LumisurfError
from lumisurf.mesh.ply import write_ply
from lumisurf.mesh.uv_bake import (
    BAKED_KEYS,
    MaterialFn,
    UVAtlas,
    bake_textures,
    evaluate_chunked,
    linear_to_srgb,
    to_uint8,
    unwrap,
)

__all__ = ["MaterialFn", "export_materials", "vertex_materials", "write_material_ply"]

FILES = {
    "ply": "mesh_vertex_materials.ply",
    "obj": "mesh.obj",
    "mtl": "mesh.mtl",
    "glb": "mesh.glb",
    "xml": "scene.xml",
    "albedo": "albedo.png",
    "roughness": "roughness.png",
    "metallic": "metallic.png",
    "metallic_roughness": "metallic_roughness.png",
}


def vertex_materials(
    vertices: np.ndarray, material_fn: MaterialFn, chunk: int = 65536, progress: bool = False
) -> dict[str, np.ndarray]:
    """``material_fn`` evaluated at every vertex [N, 3] (as float32), in chunks; all keys returned."""
    return evaluate_chunked(vertices, material_fn, BAKED_KEYS, chunk, progress, desc="vertex materials")


def _ply_columns(materials: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Named 1-D columns for the PLY: colors, roughness, metallic, linear albedo, then extras."""
    albedo = np.asarray(materials["albedo"], dtype=np.float64)
    rgb = to_uint8(linear_to_srgb(albedo))
    cols = [(c, rgb[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    cols += [(k, np.asarray(materials[k], dtype=np.float32)) for k in ("roughness", "metallic")]
    cols += [(f"albedo_{c}", albedo[:, i].astype(np.float32)) for i, c in enumerate("rgb")]
    for key, value in materials.items():
        if key in BAKED_KEYS:
            continue
        value = np.asarray(value)
        value = value.astype(np.uint8) if value.dtype == bool else value
        kind = np.int32 if np.issubdtype(value.dtype, np.integer) else np.float32
        if value.ndim == 1:
            cols.append((key, value.astype(kind)))
        else:
            flat = value.reshape(len(value), -1)
            cols += [(f"{key}_{j}", flat[:, j].astype(kind)) for j in range(flat.shape[1])]
    return cols


def write_material_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, materials: dict[str, np.ndarray]) -> Path:
    """Binary little-endian PLY: float x y z, uchar red green blue (sRGB of the albedo), float
    roughness, metallic, albedo_r/g/b (linear) and one property per extra channel."""
    cols = [(c, np.asarray(vertices, np.float32)[:, i]) for i, c in enumerate("xyz")] + _ply_columns(materials)
    return write_ply(path, cols, faces, ["lumisurf: red/green/blue = sRGB 8-bit albedo; albedo_* linear"])


def _save_textures(out_dir: Path, maps: dict[str, np.ndarray]) -> dict[str, Path]:
    """albedo.png (sRGB), roughness.png / metallic.png (raw grey) and the glTF metallic_roughness.png."""
    rough, metal = to_uint8(maps["roughness"]), to_uint8(maps["metallic"])
    images = {
        "albedo": Image.fromarray(to_uint8(linear_to_srgb(maps["albedo"])), "RGB"),
        "roughness": Image.fromarray(rough, "L"),
        "metallic": Image.fromarray(metal, "L"),
        "metallic_roughness": Image.fromarray(np.stack([np.zeros_like(rough), rough, metal], -1), "RGB"),
    }
    paths = {}
    for key, image in images.items():
        paths[key] = out_dir / FILES[key]
        image.save(paths[key])
    return paths


def _write_obj(out_dir: Path, vertices: np.ndarray, faces: np.ndarray, atlas: UVAtlas) -> tuple[Path, Path]:
    """mesh.obj (original vertices, vertex normals, vt with v up) and mesh.mtl with PBR extension lines."""
    mtl = out_dir / FILES["mtl"]
    mtl.write_text(
        "# lumisurf material (PBR extension: Pr = roughness, Pm = metallic)\n"
        "newmtl material_0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 2\nPr 1\nPm 1\n"
        f"map_Kd {FILES['albedo']}\nmap_Pr {FILES['roughness']}\nmap_Pm {FILES['metallic']}\n"
    )
    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    uv = np.stack([atlas.uv[:, 0], 1.0 - atlas.uv[:, 1]], axis=1)  # OBJ: v up
    fv, ft = atlas.vmapping[atlas.faces] + 1, atlas.faces + 1  # [F, 3] 1-based
    face_rows = np.stack([fv, ft, fv], axis=-1).reshape(len(faces), 9)
    obj = out_dir / FILES["obj"]
    with open(obj, "w") as fh:
        fh.write(f"# lumisurf mesh with UV atlas\nmtllib {FILES['mtl']}\n")
        np.savetxt(fh, np.asarray(vertices, np.float64), fmt="v %.8g %.8g %.8g")
        np.savetxt(fh, normals, fmt="vn %.6f %.6f %.6f")
        np.savetxt(fh, uv, fmt="vt %.7f %.7f")
        fh.write("usemtl material_0\n")
        np.savetxt(fh, face_rows, fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
    return obj, mtl


def _write_glb(
    out_dir: Path, vertices: np.ndarray, faces: np.ndarray, atlas: UVAtlas, textures: dict[str, Path]
) -> Path:
    """mesh.glb: UV-split mesh with a PBR material (factors 1, maps carry the values)."""
    material = trimesh.visual.material.PBRMaterial(
        name="material_0",
        baseColorTexture=Image.open(textures["albedo"]).convert("RGB"),
        metallicRoughnessTexture=Image.open(textures["metallic_roughness"]).convert("RGB"),
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=1.0,
        roughnessFactor=1.0,
    )
    uv = np.stack([atlas.uv[:, 0], 1.0 - atlas.uv[:, 1]], axis=1)  # trimesh convention: v up
    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals[atlas.vmapping]
    mesh = trimesh.Trimesh(
        np.asarray(vertices, np.float64)[atlas.vmapping],
        atlas.faces,
        vertex_normals=normals,
        process=False,
        visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
    )
    glb = out_dir / FILES["glb"]
    glb.write_bytes(mesh.export(file_type="glb"))
    return glb


def _bitmap(parent: ET.Element, name: str, filename: str, raw: bool) -> None:
    tex = ET.SubElement(parent, "texture", type="bitmap", name=name)
    ET.SubElement(tex, "string", name="filename", value=filename)
    ET.SubElement(tex, "boolean", name="raw", value="true" if raw else "false")


def _env_path(env_map: Path, out_dir: Path) -> str:
    try:
        return Path(os.path.relpath(Path(env_map).resolve(), out_dir.resolve())).as_posix()
    except ValueError:  # e.g. another drive on Windows
        return Path(env_map).resolve().as_posix()


def _write_scene_xml(out_dir: Path, vertices: np.ndarray, env_map: Path | None) -> Path:
    """Mitsuba 3 scene: OBJ shape with a textured principled BSDF, envmap emitter, placeholder camera."""
    scene = ET.Element("scene", version="3.0.0")
    scene.append(
        ET.Comment(
            " lumisurf export. principled roughness: GGX alpha = roughness^2 (as in "
            "lumisurf). Relative paths resolve against this file's folder. "
        )
    )
    ET.SubElement(scene, "integrator", type="path")
    bsdf = ET.SubElement(scene, "bsdf", type="principled", id="material_0")
    _bitmap(bsdf, "base_color", FILES["albedo"], raw=False)  # 8-bit sRGB -> linear on load
    _bitmap(bsdf, "roughness", FILES["roughness"], raw=True)
    _bitmap(bsdf, "metallic", FILES["metallic"], raw=True)
    shape = ET.SubElement(scene, "shape", type="obj")
    ET.SubElement(shape, "string", name="filename", value=FILES["obj"])
    ET.SubElement(shape, "ref", id="material_0")
    if env_map is None:
        scene.append(ET.Comment(' no environment map given: add <emitter type="envmap"> here '))
    else:
        emitter = ET.SubElement(scene, "emitter", type="envmap")
        ET.SubElement(emitter, "string", name="filename", value=_env_path(env_map, out_dir))
    lo, hi = np.asarray(vertices).min(axis=0), np.asarray(vertices).max(axis=0)
    centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2) or 1.0
    origin = centre + np.array([0.0, 0.0, 3.0 * radius])
    scene.append(ET.Comment(" placeholder camera framing the mesh from +z: replace with a real pose "))
    sensor = ET.SubElement(scene, "sensor", type="perspective")
    ET.SubElement(sensor, "float", name="fov", value="40")
    to_world = ET.SubElement(sensor, "transform", name="to_world")
    fmt = lambda v: ", ".join(f"{x:.6g}" for x in v)  # noqa: E731
    ET.SubElement(to_world, "lookat", origin=fmt(origin), target=fmt(centre), up="0, 1, 0")
    sampler = ET.SubElement(sensor, "sampler", type="independent")
    ET.SubElement(sampler, "integer", name="sample_count", value="256")
    film = ET.SubElement(sensor, "film", type="hdrfilm")
    ET.SubElement(film, "integer", name="width", value="800")
    ET.SubElement(film, "integer", name="height", value="800")
    ET.indent(scene)
    path = out_dir / FILES["xml"]
    ET.ElementTree(scene).write(path, encoding="utf-8", xml_declaration=True)
    return path


def scene_files(xml_path: Path) -> list[Path]:
    """Every file a scene XML names (``<string name="filename">``), resolved against its folder."""
    root = ET.parse(xml_path).getroot()
    return [xml_path.parent / s.get("value") for s in root.iter("string") if s.get("name") == "filename"]


def export_materials(
    out_dir: Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    material_fn: MaterialFn,
    texture_size: int = 1024,
    env_map: Path | None = None,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Path]:
    """Write the per-vertex PLY, baked textures, OBJ/MTL, GLB and Mitsuba scene.xml into ``out_dir``.

    ``vertices`` [N, 3] world frame, ``faces`` [F, 3]. Refuses to overwrite unless ``force``.
    Returns the written paths keyed ply/obj/mtl/glb/xml/albedo/roughness/metallic/metallic_roughness.
    """
    out_dir = Path(out_dir)
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3 or not len(faces):
        raise LumisurfError(
            f"export_materials needs vertices [N, 3] and faces [F>0, 3], got {vertices.shape} and {faces.shape}"
        )
    existing = [FILES[k] for k in FILES if (out_dir / FILES[k]).exists()]
    if existing and not force:
        raise LumisurfError(f"{out_dir} already holds {', '.join(existing)}; refusing to overwrite (use --force)")
    if env_map is not None and not Path(env_map).is_file():
        raise LumisurfError(f"environment map {env_map} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "ply": write_material_ply(
            out_dir / FILES["ply"], vertices, faces, vertex_materials(vertices, material_fn, progress=False)
        )
    }
    if progress:
        tqdm.write(f"UV unwrapping {len(faces)} faces with xatlas (no progress bar; ~20 s per 70k faces)")
    atlas = unwrap(vertices, faces, texture_size)
    maps, _ = bake_textures(vertices, atlas, material_fn, texture_size, progress=progress)
    paths.update(_save_textures(out_dir, maps))
    paths["obj"], paths["mtl"] = _write_obj(out_dir, vertices, faces, atlas)
    paths["glb"] = _write_glb(out_dir, vertices, faces, atlas, paths)
    paths["xml"] = _write_scene_xml(out_dir, vertices, env_map)
    missing = [str(p) for p in scene_files(paths["xml"]) if not p.exists()]
    if missing:
        raise LumisurfError(f"scene.xml names missing files: {', '.join(missing)}")
    return paths
