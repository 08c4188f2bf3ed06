"""What the viewer puts in the viser scene: the mesh, the dataset's camera frustums, the unit sphere and the box.

Everything lives in the run's normalised frame (the unit sphere holds the object); viser cameras and frustums
follow OpenCV (+x right, +y down, +z forward), as lumisurf's cameras do.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from lumisurf.data.cameras import Cameras
from lumisurf.errors import LumisurfError


def viser():
    try:
        import viser
    except ImportError:
        raise LumisurfError('the viewer needs viser: pip install -e ".[viewer]"') from None
    return viser


def wxyz(rot: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation matrix [3, 3]."""
    return viser().transforms.SO3.from_matrix(np.asarray(rot, np.float64)).wxyz


def up_direction(cams: Cameras) -> np.ndarray:
    """The world up the cameras agree on: minus the mean of their image-down (+y) axes."""
    up = -cams.c2w[:, :3, 1].double().mean(0).numpy()
    n = np.linalg.norm(up)
    return up / n if n > 1e-6 else np.array([0.0, 0.0, 1.0])


def thumbnail(image: np.ndarray, long_side: int = 96) -> np.ndarray:
    """[h, w, 3] uint8 copy of an image (uint8, or float in [0, 1]) with its longest side ``long_side``."""
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = image.shape[:2]
    s = long_side / max(h, w)
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(image[..., :3])).resize(
            (max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR
        )
    )


def add_cameras(server, cams: Cameras, images, on_click) -> list:
    """One frustum per camera (its image as a thumbnail), ``/cameras/NNNN``; ``on_click(index)`` on a click."""
    handles = []
    dist = float(cams.centers.norm(dim=-1).median())
    for i in range(len(cams)):
        fov = 2 * math.atan(0.5 * cams.height / float(cams.fy[i]))
        h = server.scene.add_camera_frustum(
            f"/cameras/{i:04d}",
            fov=fov,
            aspect=cams.width / cams.height,
            scale=0.08 * dist,
            thickness=0.004 * dist,
            image=thumbnail(np.asarray(images[i])),
            wxyz=wxyz(cams.c2w[i, :3, :3].numpy()),
            position=cams.c2w[i, :3, 3].numpy().astype(np.float64),
            color=(60, 90, 200),
        )
        h.on_click(lambda event, i=i: on_click(i))
        handles.append(h)
    return handles


def circle(axis: int, n: int = 96) -> np.ndarray:
    """[n, 2, 3] segments of the unit circle perpendicular to ``axis``."""
    t = np.linspace(0, 2 * np.pi, n + 1)
    p = np.zeros((n + 1, 3))
    a, b = [k for k in range(3) if k != axis]
    p[:, a], p[:, b] = np.cos(t), np.sin(t)
    return np.stack([p[:-1], p[1:]], 1)


def box_edges(half: float = 1.0) -> np.ndarray:
    """[12, 2, 3] edges of the cube [-half, half]^3."""
    corners = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
    edges = [(i, j) for i in range(8) for j in range(i + 1, 8) if np.sum(corners[i] != corners[j]) == 1]
    return np.stack([[corners[i], corners[j]] for i, j in edges])


def add_bounds(server) -> None:
    """The unit sphere (three great circles) and the normalisation box [-1, 1]^3 (marching-cubes bounds)."""
    sphere = np.concatenate([circle(k) for k in range(3)])
    server.scene.add_line_segments("/bounds/unit_sphere", sphere, colors=(150, 150, 150), thickness=0.004)
    server.scene.add_line_segments("/bounds/box", box_edges(), colors=(200, 160, 60), thickness=0.004)


def add_mesh(server, mesh):
    """The mesh (trimesh, normalised frame) with its vertex colors when it has them; returns the handle."""
    return server.scene.add_mesh_trimesh("/mesh", mesh)


def bands_of(cams, n: int):
    """Camera 0 of ``cams`` cut into ``n`` horizontal bands (sub-cameras of the same image), top to bottom."""
    step = max(1, -(-cams.height // n))
    for y0 in range(0, cams.height, step):
        yield type(cams)(
            cams.c2w,
            cams.fx,
            cams.fy,
            cams.cx,
            cams.cy - y0,
            width=cams.width,
            height=min(step, cams.height - y0),
            distortion=cams.distortion,
        )


def setup_scene(server, split, on_click) -> list:
    """What every page shows: world up from the cameras, the unit sphere and box, and the frustums of ``split``
    (``on_click(index)``); returns the frustum handles."""
    server.scene.set_up_direction(tuple(up_direction(split.cameras)))
    add_bounds(server)
    return add_cameras(server, split.cameras, split.images, on_click)


def client_camera(camera, long_side: int, device) -> Cameras:
    """A lumisurf camera for a viser client camera (``wxyz``, ``position``, vertical ``fov`` in radians,
    ``aspect`` = width / height), its image ``long_side`` pixels on the longer side."""
    aspect = float(camera.aspect)
    w, h = (
        (long_side, max(1, round(long_side / aspect)))
        if aspect >= 1
        else (max(1, round(long_side * aspect)), long_side)
    )
    f = 0.5 * h / math.tan(0.5 * float(camera.fov))
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.as_tensor(viser().transforms.SO3(np.asarray(camera.wxyz)).as_matrix(), dtype=torch.float32)
    c2w[:3, 3] = torch.as_tensor(np.asarray(camera.position), dtype=torch.float32)
    one = torch.ones(1)
    return Cameras(c2w[None], one * f, one * f, one * (w / 2), one * (h / 2), width=w, height=h).to(device)


def _grey(v: np.ndarray) -> np.ndarray:
    g = (np.clip(np.asarray(v, np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.repeat(g[:, None], 3, 1)


PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
    ],
    np.uint8,
)


def mesh_colorings(mesh, materials_ply) -> dict[str, np.ndarray]:
    """Vertex colors [V, 3] uint8 to switch between: the mesh's own (radiance), and from ``materials_ply``
    (``RUN/mesh_materials.ply``, same vertices, written by Stage I material runs) albedo, roughness, metallic and,
    for segmented runs, the material id."""
    out = {}
    colors = getattr(mesh.visual, "vertex_colors", None)
    if colors is not None and len(colors) == len(mesh.vertices):
        out["radiance"] = np.asarray(colors)[:, :3]
    if materials_ply is None or not materials_ply.exists():
        return out
    import trimesh

    raw = trimesh.load(materials_ply, process=False).metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    if raw is None or len(raw) != len(mesh.vertices):
        return out
    names = raw.dtype.names
    out["albedo"] = np.stack([raw[c] for c in ("red", "green", "blue")], 1).astype(np.uint8)
    out.update({k: _grey(raw[k]) for k in ("roughness", "metallic") if k in names})
    if "material_id" in names:
        out["material id"] = PALETTE[np.asarray(raw["material_id"]) % len(PALETTE)]
    return out
