"""Lift the Stage I materials into the assignment field (``model.assignment.init: materials``).

In phases A/B the pretrain head (the GGX ``specular`` head: albedo, metallic, roughness) renders alone and is
fitted to the whole object, as in NeRO's Stage I. When the assignment starts training (phase C):
1. surface points: random foreground pixels of the training views (the dataset masks, else every pixel)
   are rendered; the points at the rendered depth where opacity > 0.5 are kept;
2. features (``lift.features``): ``materials``, the pretrain head's parameters there (albedo rgb, metallic,
   roughness, all in [0, 1]); ``views``, what the training photos show there (``train/view_stats.py``: the
   chromaticity of the median color over the views that see the point, and the log of the spread of its
   luminance over them relative to the median: shading changes neither much, the material changes one or
   both); ``both``;
3. the features averaged over each point's nearest neighbours (``lift.feature_smoothing`` times), then
   K clusters (``lift.clustering``: k-means, or a full-covariance Gaussian mixture, which fits a large,
   spread-out region beside a small, tight one); clusters ranked by specularity (mean metallic - mean
   roughness, plus the luminance spread with view features) go to the heads ranked by view dependence
   (specular, transmission, subsurface, lambert), so a metal region lands on the specular head and a rough
   dielectric on Lambert;
4. soft targets (k-means: softmax(-|f - c_k|^2 / T) with T a tenth of the squared distance between the two
   closest centres; the mixture: its responsibilities); with two heads, smoothed over the surface by a
   crease-weighted min-cut (``surface_graph.py``);
5. the assignment field alone is fitted to the targets at the 3D points (its own Adam), and the targets
   keep teaching it through the ``lift`` loss (cross-entropy at a random subset of the points each step).

With more than two heads the cluster probabilities are used as they are (the min-cut is binary). When the
closest centres are nearer than ``min_separation`` the object is taken as one material: every point goes to
the head of the largest cluster.

Metal against dielectric and smooth against rough are the first splits of PBR materials, and Stage I
recovers them where reflections are visible, though its albedo also follows the light (a sphere's lit top
clusters with a bright metal). The view features need no material model: hue and view dependence.
Materials that differ in neither (two dielectrics of the same color and roughness) are not told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lumisurf.config import LiftConfig
from lumisurf.fields.assignment import gaussian_mixture, kmeans
from lumisurf.losses.segmentation import soft_cross_entropy
from lumisurf.models.surface import RenderState
from lumisurf.renderers.image import render_rays
from lumisurf.shading.heads import HEADS
from lumisurf.train.surface_graph import knn_graph, smooth_labels
from lumisurf.train.view_stats import view_statistics


class LiftNotReady(RuntimeError):
    """Too few surface points to lift materials from (the geometry has not formed, or it collapsed)."""


@dataclass
class LiftTargets:
    points: Tensor  # [P, 3] surface points (normalised frame)
    targets: Tensor  # [P, K] soft head assignment (rows sum to 1), in head order
    centres: Tensor  # [K, D] cluster centres of the features, in head order
    separation: float  # distance between the two closest centres (feature units)

    def loss(self, field, n: int, generator: torch.Generator) -> Tensor:
        """Cross-entropy of the assignment field to the targets at ``n`` random lifted points."""
        pick = torch.randint(self.points.shape[0], (n,), generator=generator).to(self.points.device)
        return soft_cross_entropy(field.probs(self.points[pick]), self.targets[pick])


def surface_points(
    model, cameras, masks: Tensor | None, n_rays: int, generator: torch.Generator, chunk: int = 4096
) -> Tensor:
    """Points [P, 3] where ``n_rays`` random (foreground) training pixels hit the surface (opacity > 0.5)."""
    n, h, w = len(cameras), cameras.height, cameras.width
    if masks is not None:
        fg = (masks > 0.5).reshape(-1).nonzero()[:, 0]
        flat = fg[torch.randint(fg.numel(), (n_rays,), generator=generator)]
    else:
        flat = torch.randint(n * h * w, (n_rays,), generator=generator)
    points, keep = pixel_surface_hits(model, cameras, flat, chunk)
    return points[keep]


def pixel_surface_hits(model, cameras, flat: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Rendered surface points [n, 3] of training pixels with flat indices [n] (view * H * W + row * W + col)
    and whether each ray hit the surface (opacity > 0.5) [n]."""
    h, w = cameras.height, cameras.width
    cam, rem = flat // (h * w), flat % (h * w)
    px, py = (rem % w).float() + 0.5, (rem // w).float() + 0.5
    o, d = cameras.rays(cam.to(cameras.device), px.to(cameras.device), py.to(cameras.device))
    res = render_rays(
        model, o, d, torch.zeros(3, device=o.device), RenderState(1.0, False, None), chunk, keys=("opacity", "depth")
    )
    return o + d * res["depth"], res["opacity"][:, 0] > 0.5


def head_features(model, head_name: str, points: Tensor, chunk: int = 16384) -> Tensor:
    """The parameters [P, D] in (0, 1) of head ``head_name`` at ``points`` (SDF features from the model)."""
    shading = model.color
    head = shading.heads[shading.head_names.index(head_name)]
    with torch.no_grad():
        return torch.cat([head.params_at(p, model.sdf(p)[1]) for p in points.split(chunk)])


FEATURE_NAMES = {
    "materials": ["albedo_r", "albedo_g", "albedo_b", "metallic", "roughness"],
    "views": ["chroma_r", "chroma_g", "chroma_b", "log_spread"],
}
FEATURE_NAMES["both"] = FEATURE_NAMES["materials"] + FEATURE_NAMES["views"]


def specularity(centres: Tensor, kind: str = "materials") -> Tensor:
    """[K] how specular each feature centre [K, D] of feature set ``kind`` is: metallic - roughness (Stage I
    materials) plus the luminance spread over the views (view features)."""
    names = FEATURE_NAMES[kind]
    spec = torch.zeros(centres.shape[0], dtype=centres.dtype)
    if "metallic" in names:
        spec = spec + centres[:, names.index("metallic")] - centres[:, names.index("roughness")]
    if "log_spread" in names:
        spec = spec + centres[:, names.index("log_spread")]
    return spec


def cluster_to_heads(
    features: Tensor, head_names, kind: str = "materials", method: str = "kmeans", seed: int = 0
) -> tuple[Tensor, Tensor, float]:
    """Cluster lift features [P, D] (set ``kind``) into len(head_names) clusters, ordered like the heads.

    ``method``: ``kmeans`` (soft targets softmax(-|f - c_k|^2 / T), T a tenth of the squared distance between
    the two closest centres) or ``gmm`` (a full-covariance Gaussian mixture's responsibilities).
    Returns soft targets [P, K], centres [K, D] (in head order) and the separation of the centres."""
    K = len(head_names)
    if method == "gmm":
        resp, centres = gaussian_mixture(features, K, seed=seed)
    else:
        centres = kmeans(features, K, seed=seed)
    by_spec = torch.argsort(specularity(centres, kind), descending=True)  # cluster indices, most specular first
    heads_by_rank = sorted(range(K), key=lambda k: HEADS[head_names[k]].view_rank)
    order = torch.empty(K, dtype=torch.long)
    for cluster, head in zip(by_spec.tolist(), heads_by_rank):
        order[head] = cluster
    ordered = centres[order]
    pair = torch.cdist(ordered, ordered) + torch.eye(K, dtype=ordered.dtype) * 1e9
    sep = float(pair.min()) if K > 1 else 0.0
    if method == "gmm":
        return resp[:, order], ordered, sep
    temperature = max(0.1 * sep**2, 1e-6)
    targets = torch.softmax(-(torch.cdist(features, ordered) ** 2) / temperature, dim=-1)
    return targets, ordered, sep


def fit_assignment(
    field, points: Tensor, targets: Tensor, steps: int, lr: float, generator: torch.Generator, batch: int = 4096
) -> float:
    """Fit the assignment field alone to soft targets [P, K] at points [P, 3]; returns the last loss."""
    opt = torch.optim.Adam([p for p in field.parameters() if p.requires_grad], lr=lr)
    loss = torch.zeros(())
    for _ in range(steps):
        pick = torch.randint(points.shape[0], (min(batch, points.shape[0]),), generator=generator).to(points.device)
        loss = soft_cross_entropy(field.probs(points[pick]), targets[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def surface_normals(model, points: Tensor, chunk: int = 16384) -> Tensor:
    """Unit SDF normals [P, 3] at points [P, 3]."""
    grads = [model.sdf.sdf_and_gradient(p, create_graph=False)[2] for p in points.split(chunk)]
    return torch.nn.functional.normalize(torch.cat(grads), dim=-1)


# the log spread ranges over ~3 on one object; scaled so that it weighs like chroma and materials in [0, 1]
SPREAD_SCALE = 0.25


def lift_features(
    model, cameras, images: Tensor, masks: Tensor | None, pretrain_head: str, points: Tensor, normals: Tensor, kind: str
) -> Tensor:
    """The lift features [P, D] (``FEATURE_NAMES[kind]``) at surface points [P, 3] with normals [P, 3]."""
    parts = []
    if kind in ("materials", "both"):
        parts.append(head_features(model, pretrain_head, points))
    if kind in ("views", "both"):
        stats = view_statistics(model.sdf.sdf, model.variance.inv_s().item(), cameras, images, points, normals, masks)
        parts += [stats.chroma(), SPREAD_SCALE * stats.log_spread()[:, None]]
    return torch.cat(parts, -1).cpu()


def smooth_features(points: Tensor, features: Tensor, k: int, iterations: int) -> Tensor:
    """Features [P, D] averaged ``iterations`` times over each point and its k nearest neighbours [P, 3]:
    materials are piecewise constant, the noise of one pixel's estimate is not."""
    if iterations <= 0 or points.shape[0] < 2:
        return features
    idx, _ = knn_graph(points.cpu(), k)
    idx = torch.cat([torch.arange(points.shape[0])[:, None], idx], 1)  # [P, k + 1] with the point itself
    for _ in range(iterations):
        features = features[idx].mean(1)
    return features


def lift_materials(
    model,
    cameras,
    images: Tensor,
    masks: Tensor | None,
    pretrain_head: str,
    cfg: LiftConfig,
    generator: torch.Generator,
) -> LiftTargets:
    """Steps 1-5 of the module docstring on a segmented model; ``cameras`` / ``images`` [N, H, W, 3] are the
    training views.

    With two heads and ``cfg.smoothness > 0`` the cluster probabilities are first smoothed over the surface
    by a crease-weighted min-cut (``surface_graph.smooth_labels``): a region whose appearance misleads the
    clustering (a mirror reflecting its neighbour, a shadow cast on a plane) joins the material of the
    smooth surface around it; the targets are then those labels (2 % label smoothing)."""
    if not HEADS[pretrain_head].gives_materials:
        raise ValueError(
            f"lifting materials needs a pretrain head that gives materials (albedo, roughness, "
            f"metallic), got '{pretrain_head}'"
        )
    heads = model.color.head_names
    pts = surface_points(model, cameras, masks, cfg.points, generator)
    if pts.shape[0] < 10 * len(heads):
        raise LiftNotReady(f"material lift: only {pts.shape[0]} surface points hit; the geometry is not ready")
    normals = surface_normals(model, pts)
    feats = lift_features(model, cameras, images, masks, pretrain_head, pts, normals, cfg.features)
    feats = smooth_features(pts, feats, cfg.neighbours, cfg.feature_smoothing)
    targets, centres, sep = cluster_to_heads(feats, heads, cfg.features, cfg.clustering)
    targets = targets.to(pts.device)
    if sep < cfg.min_separation:  # the Stage I materials do not split: one material, the largest cluster's head
        major = int(targets.argmax(-1).bincount(minlength=len(heads)).argmax())
        targets = torch.full_like(targets, 0.02 / max(len(heads) - 1, 1))
        targets[:, major] = 0.98
    elif len(heads) == 2 and cfg.smoothness > 0:
        labels = smooth_labels(
            pts, normals, targets, cfg.neighbours, cfg.crease_sharpness, cfg.smoothness, cfg.unary_floor, cfg.creases
        )
        targets = torch.nn.functional.one_hot(labels, 2).to(pts) * 0.96 + 0.02
    fit_assignment(model.assignment, pts, targets, cfg.fit_steps, cfg.fit_lr, generator)
    return LiftTargets(pts, targets, centres, sep)
