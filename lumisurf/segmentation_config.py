"""Material segmentation settings: the assignment field over K shading heads (``model.assignment``), how
Stage I materials are lifted into it (``model.assignment.lift``) and the weights of its loss terms
(``loss.segmentation``, read by the neural-field and the sparse-voxel models alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lumisurf.encodings.hash_grid import HashGridConfig

HeadName = Literal["lambert", "specular", "transmission", "subsurface"]  # lumisurf.shading.heads.HEADS


def _assignment_grid() -> HashGridConfig:
    return HashGridConfig(n_levels=8, n_features=2, log2_table_size=15, base_resolution=4, max_resolution=128)


@dataclass
class LiftConfig:
    """``init: materials`` (``lumisurf.train.material_lift``): how the Stage I materials become the assignment."""

    points: int = 20000  # training pixels rendered to surface points
    # what the lift clusters on: the pretrain head's materials, the photos' median color and view spread at the
    # points (train/view_stats.py), or both
    features: Literal["materials", "views", "both"] = "materials"
    feature_smoothing: int = 0  # times the features are averaged over each point's ``neighbours`` first
    clustering: Literal["kmeans", "gmm"] = "kmeans"  # gmm: full-covariance Gaussian mixture (EM from k-means)
    neighbours: int = 16  # kNN graph of the points (two materials: min-cut smoothing)
    crease_sharpness: float = 8.0  # edge weight ((1 + n_i.n_j) / 2)^s: label changes are cheap across creases
    # which creases lower the weight: all, or concave ones only (where parts meet; the convex edges of one part
    # stay together)
    creases: Literal["all", "concave"] = "all"
    smoothness: float = 8.0  # weight of the Potts term against the -log p cluster costs (0: no min-cut)
    unary_floor: float = 0.1  # cluster probabilities clipped below at this (bounds one point's cost)
    min_separation: float = 0.15  # closest cluster centres nearer than this (feature units): one material
    fit_steps: int = 300  # Adam steps fitting the assignment field alone to the labels
    fit_lr: float = 1e-2


@dataclass
class AssignmentConfig:
    """Soft material segmentation (Stage I phase C): A(p) -> K logits -> softmax(logits / temperature).

    One shading head per component (``heads``, length K) and the rendered color C = sum_k m_k R_k.
    ``init``: optional warm start (2D: k-means on color, or a folder of per-view id masks; 3D: the
    Stage I materials of ``pretrain_head`` clustered when the assignment starts training).
    """

    enabled: bool = False
    K: int = 2
    heads: tuple[HeadName, ...] = ("specular", "lambert")
    backend: Literal["hash", "mlp"] = "hash"
    grid: HashGridConfig = field(default_factory=_assignment_grid)  # hash backend
    multires: int = 4  # mlp backend: frequency octaves of the position
    hidden: int = 32
    layers: int = 2
    temperature: float = 1.0  # softmax temperature at the start
    learn_temperature: bool = True
    head_hidden: int = 64
    head_layers: int = 2
    # none | 2D warm start: kmeans (color of the training images) or masks (mask_path) | materials: at the
    # start of phase C, cluster the pretrain head's Stage I parameters (lumisurf.train.material_lift)
    init: Literal["none", "kmeans", "masks", "materials"] = "none"
    # phases before the assignment trains (A/B) render with this head alone, so its parameters are fitted to
    # the whole object first (the metal prior reads the specular head's metallic); None: the mixture
    pretrain_head: HeadName | None = None
    mask_path: str | None = None  # init=masks: folder of <image stem>.png integer-id maps
    lift: LiftConfig = field(default_factory=LiftConfig)  # init=materials


@dataclass
class SegmentationConfig:
    """Weights of the material-segmentation terms (``lumisurf.losses.segmentation``); used in phases C/D."""

    entropy_weight: float = 1e-3  # per-point entropy of the assignment probabilities
    sparsity_weight: float = 0.0  # 1 - max prob
    consistency_weight: float = 0.1  # variance of reprojected probabilities across views
    boundary_weight: float = 1e-2  # |A(p) - A(p + eps)|^2, down-weighted across creases
    boundary_eps: float = 1e-2
    boundary_sharpness: float = 4.0
    energy_weight: float = 0.1  # relu(mixture reflectance - 1)^2
    material_range_weight: float = 0.0
    smoothness_weight: float = 0.0  # head parameters at p and p + eps
    warm_start_weight: float = 0.1  # model.assignment.init kmeans|masks: CE of rendered A to the 2D maps
    metal_prior_weight: float = 0.0  # BCE: metallic of the specular head -> view-dependent heads
    metal_prior_threshold: float = 0.5
    metal_prior_width: float = 0.1
    lift_weight: float = 1.0  # model.assignment.init=materials: CE of A to the lifted Stage I clusters
    head_fit_weight: float = 1.0  # while the pretrain head renders alone, each other head's own rgb loss
    em_weight: float = 1.0  # phase D: cross-entropy of A to the E-step posterior
    em_temperature: float = 0.05
