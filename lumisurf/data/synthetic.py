"""The built-in synthetic scene: an analytic glossy object rendered by sphere tracing (no files).

Object (world frame, +z up, inside radius 0.7): a sphere smoothly united with a torus tilted
about x; the SDF is 1-Lipschitz (a true distance bound), so sphere tracing never overshoots.
Shading is a plausible, not physical, glossy look in linear RGB, encoded to sRGB:
``(1 - F) * albedo * (ambient + sum diffuse) + F * sky(reflected dir) + Blinn-Phong``, with
Schlick Fresnel ``F`` (metal-like F0 on the sphere, dielectric 0.04 on the torus). No shadows.
Cameras: OpenCV convention, on a sphere band (z/|eye| in [-0.3, 0.9]) at distance 2.8-3.2,
looking at the origin, 40 degree horizontal field of view; numpy ``default_rng(seed)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras
from lumisurf.data.color_space import linear_to_srgb  # noqa: F401  (re-exported)
from lumisurf.data.scene import SceneData, Split

SPHERE_CENTER = (0.0, 0.0, 0.12)
SPHERE_RADIUS = 0.38
TORUS_CENTER = (0.0, 0.0, -0.16)
TORUS_TILT_DEG = 20.0  # rotation of the torus plane about the world x axis
TORUS_MAJOR, TORUS_MINOR = 0.48, 0.14
SMOOTH_K = 0.12  # smooth-union width (world units)
BOUND_RADIUS = 0.8  # every surface point lies inside this sphere
FOV_DEG = 40.0

_SPHERE_ALBEDO = (0.85, 0.55, 0.20)  # linear RGB, gold-ish
_TORUS_ALBEDO = (0.10, 0.28, 0.70)  # linear RGB, blue
_LIGHTS = (
    ((1.0, -1.0, 2.0), (2.0, 1.9, 1.7)),
    ((-1.5, 0.6, 0.8), (0.5, 0.6, 0.8)),
    ((0.3, 1.5, -0.4), (0.35, 0.3, 0.25)),
)  # (direction towards light, color)
_AMBIENT = 0.08


# ----------------------------------------------------------------------------- geometry
def sphere_sdf(p: Tensor) -> Tensor:
    """Exact SDF of the sphere part. p [N, 3] -> [N]."""
    return (p - p.new_tensor(SPHERE_CENTER)).norm(dim=-1) - SPHERE_RADIUS


def torus_frame(p: Tensor) -> Tensor:
    """World points [N, 3] -> the torus' local frame (torus in its local xy plane)."""
    a = math.radians(TORUS_TILT_DEG)
    q = p - p.new_tensor(TORUS_CENTER)
    c, s = math.cos(a), math.sin(a)
    return torch.stack([q[:, 0], c * q[:, 1] + s * q[:, 2], -s * q[:, 1] + c * q[:, 2]], -1)


def torus_sdf(p: Tensor) -> Tensor:
    """Exact SDF of the tilted torus part. p [N, 3] -> [N]."""
    q = torus_frame(p)
    ring = q[:, :2].norm(dim=-1) - TORUS_MAJOR
    return torch.stack([ring, q[:, 2]], -1).norm(dim=-1) - TORUS_MINOR


def smooth_min(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Polynomial smooth minimum; its gradient is a convex mix of those of a and b (1-Lipschitz)."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + h * (a - b) - k * h * (1.0 - h)


def synthetic_sdf(points: Tensor) -> Tensor:
    """SDF of the synthetic object (negative inside), a true distance bound. [N, 3] -> [N]."""
    return smooth_min(sphere_sdf(points), torus_sdf(points), SMOOTH_K)


def sdf_normals(points: Tensor) -> Tensor:
    """Unit outward normals [N, 3] = normalised autograd gradient of :func:`synthetic_sdf`."""
    with torch.enable_grad():
        p = points.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(synthetic_sdf(p).sum(), p)
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def trace_scene(o: Tensor, d: Tensor, max_steps: int = 128, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """First hit of rays o, d [N, 3] (unit d) with the object. Returns hit [N] bool and t [N]."""
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - BOUND_RADIUS**2)
    root = disc.clamp_min(0).sqrt()
    t, t_far = (-b - root).clamp_min(0), -b + root
    hit = torch.zeros_like(b, dtype=torch.bool)
    alive = torch.nonzero((disc > 0) & (t_far > 0)).squeeze(-1)
    for _ in range(max_steps):
        if alive.numel() == 0:
            break
        s = synthetic_sdf(o[alive] + t[alive, None] * d[alive])
        t[alive] += s
        done = s < eps
        hit[alive[done]] = True
        alive = alive[~done & (t[alive] < t_far[alive])]
    return hit, t


# ----------------------------------------------------------------------------- shading
def albedo(p: Tensor) -> tuple[Tensor, Tensor]:
    """Linear base color [N, 3] (gold sphere part, blue torus, smooth blend) and sphere weight [N, 1]."""
    w = torch.sigmoid((torus_sdf(p) - sphere_sdf(p)) / 0.02)[:, None]  # 1 on the sphere
    return w * p.new_tensor(_SPHERE_ALBEDO) + (1 - w) * p.new_tensor(_TORUS_ALBEDO), w


def sky(r: Tensor) -> Tensor:
    """Procedural environment radiance [N, 3] in unit directions r [N, 3]: sky, horizon, ground."""
    z = r[:, 2:3]
    horizon, zenith, ground = (r.new_tensor(c) for c in ((1.0, 0.95, 0.9), (0.25, 0.45, 0.95), (0.25, 0.2, 0.15)))
    up = horizon + (zenith - horizon) * z.clamp_min(0).sqrt()
    down = horizon + (ground - horizon) * (-z).clamp_min(0).pow(0.3)
    return torch.where(z > 0, up, down)


def shade(p: Tensor, n: Tensor, v: Tensor) -> Tensor:
    """Linear RGB [N, 3] at surface points p with unit normals n, unit directions to the eye v."""
    base, metal = albedo(p)
    ndv = (n * v).sum(-1, keepdim=True).clamp(0, 1)
    f0 = metal * 0.8 * base + (1 - metal) * 0.04
    fres = f0 + (1 - f0) * (1 - ndv) ** 5
    diffuse = torch.full_like(p, _AMBIENT)
    spec = torch.zeros_like(p)
    for direction, color in _LIGHTS:
        l = p.new_tensor(direction)
        l = l / l.norm()
        c = p.new_tensor(color)
        ndl = (n @ l).clamp_min(0)[:, None]
        h = v + l
        h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        ndh = (n * h).sum(-1, keepdim=True).clamp_min(0)
        diffuse = diffuse + ndl * c
        spec = spec + 0.6 * ndh.pow(120.0) * (ndl > 0) * c
    r = 2 * ndv * n - v
    return (1 - fres) * (1 - 0.7 * metal) * base * diffuse + fres * sky(r) + spec


# ----------------------------------------------------------------------------- cameras, render
def look_at_cameras(eyes: np.ndarray, width: int, height: int, fov_deg: float = FOV_DEG) -> Cameras:
    """OpenCV cameras at ``eyes`` [n, 3] looking at the origin with world +z up."""
    eye = torch.as_tensor(eyes, dtype=torch.float32)
    fwd = -eye / eye.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0]).expand_as(fwd)
    right = torch.linalg.cross(fwd, up)
    right = right / right.norm(dim=-1, keepdim=True)
    down = torch.linalg.cross(fwd, right)
    c2w = torch.eye(4).repeat(len(eye), 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, fwd, eye
    f = 0.5 * width / math.tan(0.5 * math.radians(fov_deg))
    n = len(eye)
    return Cameras(
        c2w,
        torch.full((n,), f),
        torch.full((n,), f),
        torch.full((n,), width / 2.0),
        torch.full((n,), height / 2.0),
        width,
        height,
    )


def render_views(cams: Cameras, ss: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """Render every view with ``ss x ss`` supersampling.

    Returns sRGB images [n, H, W, 3] (straight color, 0 on background), coverage masks [n, H, W]
    and world unit normals [n, H, W, 3] (mean of the hit sub-samples, 0 on background).
    """
    n, h, w = len(cams), cams.height, cams.width
    sub = (torch.arange(ss, dtype=torch.float32) + 0.5) / ss
    rows = (torch.arange(h, dtype=torch.float32)[:, None] + sub).reshape(-1)  # [h*ss]
    cols = (torch.arange(w, dtype=torch.float32)[:, None] + sub).reshape(-1)  # [w*ss]
    py, px = torch.meshgrid(rows, cols, indexing="ij")
    k = py.numel()
    cam_idx = torch.arange(n).repeat_interleave(k)
    o, d = cams.rays(cam_idx, px.reshape(-1).repeat(n), py.reshape(-1).repeat(n))
    hit, t = trace_scene(o, d)
    rgb = torch.zeros(n * k, 3)
    nrm = torch.zeros(n * k, 3)
    if hit.any():
        p = o[hit] + t[hit, None] * d[hit]
        nrm[hit] = sdf_normals(p)
        rgb[hit] = shade(p, nrm[hit], -d[hit])

    def pool(x: Tensor) -> Tensor:  # [n*k, c] -> [n, h, w, c] summed over sub-samples
        return x.reshape(n, h, ss, w, ss, -1).sum((2, 4))

    cover = pool(hit.float()[:, None])
    fg = cover.clamp_min(1)
    images = linear_to_srgb(pool(rgb) / fg)
    normals = pool(nrm)
    normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return images, cover[..., 0] / (ss * ss), normals


def sample_eyes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Camera centres [n, 3]: uniform on the band z/|eye| in [-0.3, 0.9], distance in [2.8, 3.2]."""
    z = rng.uniform(-0.3, 0.9, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    dist = rng.uniform(2.8, 3.2, n)
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1) * dist[:, None]


def synthetic_mesh(res: int = 128):
    """GT mesh (trimesh, world frame, outward faces) by marching cubes of the SDF on ``res^3``."""
    import trimesh
    from skimage.measure import marching_cubes

    lo = -BOUND_RADIUS
    step = 2 * BOUND_RADIUS / (res - 1)
    ax = torch.linspace(-BOUND_RADIUS, BOUND_RADIUS, res)
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    vol = synthetic_sdf(grid).reshape(res, res, res).numpy()
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(step, step, step))
    mesh = trimesh.Trimesh(verts + lo, faces, process=False)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def make_synthetic_scene(n_train: int = 40, n_test: int = 8, resolution: int = 64, seed: int = 0) -> SceneData:
    """The built-in scene: train/test splits rendered at ``resolution`` squared, GT normals on test.

    World frame = the object's frame (already inside the unit sphere); ``normalization`` is None.
    """
    rng = np.random.default_rng(seed)
    eyes = sample_eyes(n_train + n_test, rng)
    splits = {}
    for name, sl in (("train", slice(0, n_train)), ("test", slice(n_train, n_train + n_test))):
        cams = look_at_cameras(eyes[sl], resolution, resolution)
        if len(cams) == 0:
            continue
        images, masks, normals = render_views(cams)
        files = [Path("<builtin>") / name / f"r_{i}.png" for i in range(len(cams))]
        splits[name] = Split(cams, images, masks, files, normals if name == "test" else None)
    return SceneData(
        name="synthetic",
        root=Path("<builtin>"),
        format="synthetic",
        splits=splits,
        normalization=None,
        normalized=False,
        gt_mesh=synthetic_mesh(),
        meta={"seed": seed, "fov_deg": FOV_DEG, "sdf": "lumisurf.data.synthetic.synthetic_sdf"},
    )
