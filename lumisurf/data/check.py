"""``lumisurf data check PATH``: load, normalise and summarise a dataset, and draw its cameras.

Problems (camera inside the unit sphere, sphere centre off-image, empty masks, GT outside the
sphere) are reported as ``WARN`` lines, never raised: the point is to let a person judge. (Files that
cannot be read, too few training views etc. are DataErrors, as in training; training also refuses
when most training cameras lie inside the unit sphere, see ``normalization.check_cameras_outside``.)
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras
from lumisurf.data.images import as_float
from lumisurf.data.normalization import cameras_inside, cameras_inside_message, normalize_scene, project_points
from lumisurf.data.readers import load_scene
from lumisurf.data.scene import SceneData
from lumisurf.data.synthetic import make_synthetic_scene
from lumisurf.errors import DataWarning

_SPLIT_COLORS = {"train": "tab:blue", "test": "tab:orange", "relight": "tab:green"}


def check_dataset(path: Path | None, out_png: Path) -> str:
    """Summary lines of the scene at ``path`` (None = built-in synthetic scene); writes ``out_png``."""
    with warnings.catch_warnings(record=True) as caught:  # the readers' DataWarnings become WARN lines
        warnings.simplefilter("always", DataWarning)
        scene = make_synthetic_scene() if path is None else load_scene(Path(path))
    scene = normalize_scene(scene)
    lines, warns = summarize(scene)
    warns = [str(w.message) for w in caught if issubclass(w.category, DataWarning)] + warns
    draw_check_figure(scene, Path(out_png))
    return "\n".join(lines + [f"WARN: {w}" for w in warns] + ([] if warns else ["no problems found"]))


def _range(x: Tensor) -> str:
    lo, hi = float(x.min()), float(x.max())
    return f"{lo:.1f}" if math.isclose(lo, hi, rel_tol=1e-4, abs_tol=1e-3) else f"{lo:.1f}..{hi:.1f}"


def center_in_image(cams: Cameras, masks: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Per view: does the origin (unit-sphere centre) project inside the image [n] / the mask [n]?"""
    origin = torch.zeros(1, 3, dtype=cams.c2w.dtype, device=cams.device)
    in_img, in_mask = [], []
    for i in range(len(cams)):
        u, v, valid = project_points(cams, i, origin)
        ok = bool(valid[0] and 0 <= u[0] < cams.width and 0 <= v[0] < cams.height)
        in_img.append(ok)
        if masks is not None:
            in_mask.append(ok and bool(masks[i, int(v[0]), int(u[0])] > 0.5))
    return torch.tensor(in_img), (torch.tensor(in_mask) if masks is not None else None)


def summarize(scene: SceneData) -> tuple[list[str], list[str]]:
    """Human-readable facts about a normalised scene, and warnings."""
    splits = scene.splits
    cams = list(splits.values())
    all_c = torch.cat([sp.cameras.c2w for sp in cams])
    cat = lambda attr: torch.cat([getattr(sp.cameras, attr) for sp in cams])  # noqa: E731
    sizes = sorted({f"{sp.cameras.width} x {sp.cameras.height}" for sp in cams})
    lines = [
        f"dataset: {scene.name} ({scene.root})",
        f"format: {scene.format}",
        "splits: " + ", ".join(f"{k} {len(sp)} views" for k, sp in splits.items()),
        f"image size: {', '.join(sizes)}",
        f"intrinsics: fx {_range(cat('fx'))}, fy {_range(cat('fy'))}, cx {_range(cat('cx'))}, "
        f"cy {_range(cat('cy'))} px",
    ]
    warns: list[str] = []
    mask_info = [f"{k} {float(sp.masks.mean()):.3f}" for k, sp in splits.items() if sp.masks is not None]
    lines.append("masks: " + (f"yes (mean coverage {', '.join(mask_info)})" if mask_info else "no"))
    for k, sp in splits.items():
        if sp.masks is not None and (sp.masks > 0.5).flatten(1).sum(1).eq(0).any():
            warns.append(f"{k}: {int((sp.masks > 0.5).flatten(1).sum(1).eq(0).sum())} views have an empty mask")
    dist = [sp.cameras.distortion for sp in cams if sp.cameras.distortion is not None]
    lines.append(
        "distortion: " + (f"yes (max |k1,k2,p1,p2| = {float(torch.cat(dist).abs().max()):.4f})" if dist else "no")
    )
    norm = scene.normalization
    if norm is not None:
        c = ", ".join(f"{v:.4g}" for v in norm.center)
        lines.append(f"normalisation: {norm.source}, centre ({c}), scale {norm.scale:.4g}")
    d = all_c[:, :3, 3].norm(dim=-1)
    lines.append(
        f"camera distance to the origin (normalised): min {float(d.min()):.3f}, "
        f"median {float(d.median()):.3f}, max {float(d.max()):.3f}"
    )
    n_in = int(torch.cat([cameras_inside(sp.cameras) for sp in cams]).sum())
    lines.append(f"all cameras outside the unit sphere: {'yes' if n_in == 0 else 'no'}")
    if n_in:
        train = splits["train"] if "train" in splits else cams[0]
        n_train_in = int(cameras_inside(train.cameras).sum())
        refuse = " (training refuses: most training cameras are inside)" if 2 * n_train_in > len(train) else ""
        warns.append(cameras_inside_message(n_in, len(d)) + refuse)
    for k, sp in splits.items():
        in_img, in_mask = center_in_image(sp.cameras, sp.masks)
        msg = f"{k}: unit-sphere centre projects inside the image in {int(in_img.sum())}/{len(in_img)} views"
        if in_mask is not None:
            msg += f", inside the mask in {int(in_mask.sum())}/{len(in_mask)}"
        lines.append(msg)
        if int(in_img.sum()) < len(in_img):
            warns.append(
                f"{k}: the unit-sphere centre projects outside the image in "
                f"{len(in_img) - int(in_img.sum())}/{len(in_img)} views"
            )
        if in_mask is not None and int(in_mask.sum()) < 0.9 * len(in_mask):
            warns.append(
                f"{k}: the unit-sphere centre misses the mask in "
                f"{len(in_mask) - int(in_mask.sum())}/{len(in_mask)} views"
            )
    lines += _gt_mesh_lines(scene, warns)
    return lines, warns


def _gt_mesh_lines(scene: SceneData, warns: list[str]) -> list[str]:
    """Radius of the GT mesh (if any) in the normalised frame."""
    if scene.gt_mesh is None or scene.normalization is None:
        return []
    import trimesh

    mesh = scene.gt_mesh
    if not isinstance(mesh, trimesh.Trimesh):
        mesh = trimesh.load(mesh, force="mesh", process=False)
    r = np.linalg.norm(scene.normalization.to_normalized(np.asarray(mesh.vertices)), axis=1)
    if r.max() > 1.0:
        warns.append(f"{float((r > 1).mean()) * 100:.1f} % of the GT mesh vertices lie outside the unit sphere")
    return [f"GT mesh: {len(r)} vertices, max radius {r.max():.3f} after normalisation"]


# ----------------------------------------------------------------------------- figure
def frustum_segments(cams: Cameras, depth: float) -> np.ndarray:
    """Line segments [n * 8, 2, 3] of camera frusta cut at ``depth`` along each corner ray."""
    w, h = cams.width, cams.height
    px = torch.tensor([0.0, w, w, 0.0], device=cams.device).repeat(len(cams))
    py = torch.tensor([0.0, 0.0, h, h], device=cams.device).repeat(len(cams))
    idx = torch.arange(len(cams), device=cams.device).repeat_interleave(4)
    o, d = cams.rays(idx, px, py)
    corners = (o + depth * d).reshape(-1, 4, 3).cpu().numpy()
    eye = cams.centers.cpu().numpy()
    segs = []
    for e, c in zip(eye, corners):
        segs += [(e, c[k]) for k in range(4)] + [(c[k], c[(k + 1) % 4]) for k in range(4)]
    return np.asarray(segs)


def _draw_cameras(ax, scene: SceneData, extent: float, depth: float) -> None:
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.5", lw=0.4, alpha=0.6)
    drawn: list[Tensor] = []
    for k, sp in scene.splits.items():
        color = _SPLIT_COLORS.get(k, "tab:purple")
        if any(c.shape == sp.cameras.c2w.shape and torch.allclose(c, sp.cameras.c2w) for c in drawn):
            ax.scatter([], [], [], color=color, s=4, label=f"{k} ({len(sp)}, same cameras as above)")
            continue
        drawn.append(sp.cameras.c2w)
        ax.add_collection3d(Line3DCollection(frustum_segments(sp.cameras, depth), colors=color, lw=0.6))
        c = sp.cameras.centers.cpu().numpy()
        ax.scatter(c[:, 0], c[:, 1], c[:, 2], color=color, s=4, label=f"{k} ({len(sp)})")
    ax.scatter([0], [0], [0], color="k", marker="+", s=40)
    pts = scene.meta.get("points3D")
    if pts is not None and scene.normalization is not None:  # SfM points in the normalised frame
        p = np.asarray(scene.normalization.to_normalized(np.asarray(pts)))
        p = p[np.abs(p).max(1) < extent][:: max(1, len(p) // 3000)]
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], color="tab:brown", s=1, alpha=0.5, label=f"SfM points ({len(pts)})")
    for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        set_lim(-extent, extent)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x"), ax.set_ylabel("y"), ax.set_zlabel("z")


def draw_check_figure(scene: SceneData, out_png: Path) -> None:
    """Camera frusta + unit sphere (two 3D views) and a training image with its mask outline."""
    from matplotlib.figure import Figure

    cams = [sp.cameras for sp in scene.splits.values()]
    dist = torch.cat([c.centers.norm(dim=-1) for c in cams])
    extent = max(1.2, float(dist.max()) * 1.05)
    depth = 0.2 * float(dist.median())
    fig = Figure(figsize=(16, 5.6), dpi=100)
    for pos, (elev, azim, title) in enumerate(((25, -60, "cameras (normalised frame)"), (89, -90, "top view"))):
        ax = fig.add_subplot(1, 3, pos + 1, projection="3d")
        _draw_cameras(ax, scene, extent, depth)
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(title)
        if pos == 0:
            ax.legend(loc="upper left", fontsize=8)
        else:
            ax.set_zticks([])
            ax.set_zlabel("")
    ax = fig.add_subplot(1, 3, 3)
    train = scene.split("train") if "train" in scene.splits else next(iter(scene.splits.values()))
    ax.imshow(as_float(train.images[0]).clamp(0, 1).cpu().numpy())
    title = f"{scene.name}: {train.files[0].name if train.files else 'view 0'}"
    if train.masks is not None:
        ax.contour(train.masks[0].cpu().numpy(), levels=[0.5], colors="r", linewidths=0.8)
        title += " (mask outline red)"
    u, v, valid = project_points(train.cameras, 0, torch.zeros(1, 3, device=train.cameras.device))
    if bool(valid[0]):
        ax.plot([float(u[0]) - 0.5], [float(v[0]) - 0.5], "y+", ms=12, mew=2)  # imshow: pixel centres at ints
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    fig.suptitle(f"lumisurf data check: {scene.name} [{scene.format}]")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.04, top=0.88, wspace=0.12)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
