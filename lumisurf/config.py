"""Typed, nested configuration: dataclasses, ``Literal`` choices, unknown keys rejected.

A run is described by one :class:`Config`. Presets (``lumisurf.presets``) fill it for a method;
``dotted.key=value`` overrides on the command line change single fields, type-checked.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from lumisurf.encodings.hash_grid import HashGridConfig
from lumisurf.errors import ConfigError
from lumisurf.sampler_config import PixelSamplerName, SamplerConfig, SurfaceRenderConfig, migrate_sampler  # noqa: F401
from lumisurf.segmentation_config import AssignmentConfig, HeadName, LiftConfig, SegmentationConfig  # noqa: F401
from lumisurf.stage2_config import MaterialStageConfig
from lumisurf.train_config import GuardConfig, OptimConfig, ScheduleConfig, TrainConfig  # noqa: F401
from lumisurf.voxel_config import VoxelConfig, migrate_voxels, moved_voxel_key

# choices that name a registry's entries; tests/test_registries.py checks each against its registry
DatasetFormat = Literal["blender", "neus", "llff", "ngp", "colmap"]  # lumisurf.data.readers.READERS
SDFBackend = Literal["mlp", "hash", "hybrid"]  # lumisurf.fields.base.SDF_BACKENDS
RgbLoss = Literal["l1", "l2", "charbonnier", "huber", "log_l1"]  # lumisurf.losses.photometric.PHOTOMETRIC
ModelKindName = Literal["field", "voxels"]  # lumisurf.kinds (MODEL_KINDS)


@dataclass
class DataConfig:
    path: str | None = None  # None: the built-in synthetic scene
    format: Literal["auto", DatasetFormat] = "auto"
    background: Literal["white", "black", "random"] = "white"  # color behind masked (RGBA) images
    normalization: Literal["auto", "scale_mat", "visual_hull", "sparse_points", "camera_rig", "identity"] = "auto"
    holdout_every: int = 8  # formats without a test split: every k-th view is a test view
    max_views: int | None = None  # keep an evenly spaced subset of training views
    # load dataset images, masks and GT maps at 1/N resolution (N x N block means, intrinsics scaled; COLMAP's
    # images_N/ copies are read when present); the built-in scene ignores it (data.synthetic_resolution)
    downscale: int = 1
    synthetic_resolution: int = 64
    synthetic_views: int = 40

    @property
    def eval_background(self) -> float:
        """Grey level (0 or 1) that renders and ground truth share in every evaluation and picture:
        black for ``background=black``, else white (``random`` trains on random colors, evaluates on white)."""
        return 0.0 if self.background == "black" else 1.0


@dataclass
class ExpertsConfig:
    """Gated resolution experts (``hash`` SDF; a measured variant, off by default). The cheap expert, the first
    ``coarse_levels`` grid levels and a 1 x ``hidden`` decoder distilled from the full field (L1, ``weight``), answers
    the up-sampler's coarse queries in training wherever its |SDF| exceeds ``margin`` plus three times its running
    error; the queries near the surface get every level (``fields/sdf_hash.py``)."""

    enabled: bool = False
    coarse_levels: int = 6
    hidden: int = 32
    margin: float = 0.1
    weight: float = 0.1


@dataclass
class SDFConfig:
    backend: SDFBackend = "mlp"
    hidden: int = 256
    layers: int = 8
    skip_in: tuple[int, ...] = (4,)
    multires: int = 6  # frequency-encoding octaves of the position (0: none)
    feature_dim: int = 256
    geometric_init: bool = True
    init_radius: float = 0.5  # geometric init: SDF of a sphere of this radius
    weight_norm: bool = True
    softplus_beta: float = 100.0
    inside_out: bool = False  # scenes seen from inside (not used for objects)
    # spatial gradient of the SDF: autograd (double backward), central finite differences (6 extra
    # evaluations, step annealed), or analytic (hash backends: kernel Jacobian of the grid + the decoder's)
    normals: Literal["autograd", "finite_difference", "analytic"] = "autograd"
    grid: HashGridConfig = field(default_factory=HashGridConfig)  # hash / hybrid backends
    hybrid_residual_scale: float = 0.1  # hybrid: sdf = mlp + scale * tanh(hash residual)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)  # hash backend


@dataclass
class ColorConfig:
    hidden: int = 256
    layers: int = 4
    multires_view: int = 4
    view_encoding: Literal["frequency", "sh"] = "frequency"
    sh_degree: int = 4
    weight_norm: bool = True
    # which direction the view encoding sees: the ray direction (NeuS, Instant-NSR) or its mirror
    # reflection about the SDF normal plus n.v (Ref-NeRF / Ref-NeuS), which lets a glossy highlight stay
    # put on a flat face instead of bending the surface to follow it
    view_input: Literal["view", "reflected"] = "view"


@dataclass
class BackgroundConfig:
    # auto: 'constant' (the data.background color) when the dataset has masks, else 'nerf++'
    kind: Literal["auto", "nerf++", "constant"] = "auto"
    hidden: int = 256
    layers: int = 8
    multires: int = 10
    multires_view: int = 4
    n_samples: int = 32


@dataclass
class NeroConfig:
    """NeRO Stage I reflective shading (``model.shading: nero``); defaults are NeRO's published sizes."""

    hidden: int = 256
    layers: int = 4  # linear layers per MLP (material heads, lights, occlusion)
    weight_norm: bool = True
    ide_degree: int = 5  # SH bands of the integrated directional encoding (<= 5)
    # which bands: ``dense`` l = 0..ide_degree-1; ``octave`` l = 1, 2, 4, .., 2^(ide_degree-1) (Ref-NeRF, NeRO:
    # up to l = 16, so the lobe width resolves near-mirrors; encodings/ide.py)
    ide_bands: Literal["dense", "octave"] = "dense"
    pos_freqs: int = 8  # frequency octaves of the position (indirect light, occlusion MLP)
    dir_freqs: int = 6  # frequency octaves of the reflected direction (occlusion MLP)
    light_exp_max: float = 0.0  # lights = exp(min(x, light_exp_max)); NeRO Stage I: 0 (lights <= 1)
    inner_init: float = -0.95  # occlusion MLP output bias: occ = 0.5 * out + 0.5 starts near 0
    metallic_init: float = 0.0  # output biases (before the sigmoid)
    roughness_init: float = 0.0
    occ_points: int = 2048  # surface points per training step that get the occlusion march (0: off)
    occ_steps: int = 64  # SDF samples along each marched ray
    occ_t_start: float = 0.0  # marching starts this far from the surface point
    human_light: bool = False  # light reflected from the capturer, on a plane through the camera
    human_up: tuple[float, ...] = (0.0, 0.0, 1.0)  # world up of the normalised frame (human-light plane)
    human_fixed_camera: bool = False  # False: the plane passes through the camera's foot (height 0)


@dataclass
class ModelConfig:
    kind: ModelKindName = "field"  # field: neural SDF + volume rendering; voxels: Config.voxels
    sdf: SDFConfig = field(default_factory=SDFConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    init_variance: float = 0.3  # inv_s = exp(10 * variance)
    shading: Literal["neus", "nero"] = "neus"  # neus: NeuSColor; nero: NeRO Stage I reflective shading
    # samples: shade every significant sample and composite the colours; surface: shade each ray once at its
    # composited surface point (deferred, models/deferred.py; not with model.assignment)
    shade_at: Literal["samples", "surface"] = "samples"
    nero: NeroConfig = field(default_factory=NeroConfig)
    assignment: AssignmentConfig = field(default_factory=AssignmentConfig)


@dataclass
class ReflectionLossConfig:
    """Reflection-aware terms (Ref-NeuS; ``losses/reflection.py``), on from ``start`` (training progress):
    each ray's surface point is projected into ``views`` random other training views."""

    anomaly: bool = False  # photometric weight 1 / max(gamma * score, 1) by the multi-view reflection score
    gamma: float = 2.0
    views: int = 8
    start: float = 0.1
    # normal smoothness (1 - cos, as normal_smooth_*) gated by (1 - the anomaly weight) and the image-edge gate
    # exp(-|grad I| / edge_scale): flat reflective regions are smoothed, textured or diffuse ones are not
    smooth_weight: float = 0.0
    edge_scale: float = 0.05


@dataclass
class LossConfig:
    rgb: RgbLoss = "l1"
    rgb_weight: float = 1.0
    eikonal_weight: float = 0.1
    mask_weight: float = 0.1  # used only when the dataset has masks
    huber_delta: float = 0.1
    curvature_weight: float = 0.0  # Neuralangelo: mean |laplacian| (finite-difference normals only)
    # PermutoSDF-style smoothness: 1 - cos between normals at ray-surface hits and points ``eps`` away
    # (normalised units), at up to ``normal_smooth_points`` hits a step
    normal_smooth_weight: float = 0.0
    normal_smooth_eps: float = 0.01
    normal_smooth_points: int = 1024
    grid_tv_weight: float = 0.0  # total variation of the hash-grid features (dense levels)
    # S3IM (Xie et al. ICCV 2023): 1 - SSIM of virtual patches built from the ray batch (paper values)
    s3im_weight: float = 0.0
    s3im_kernel: int = 4
    s3im_stride: int = 4
    s3im_repeats: int = 10
    s3im_patch_height: int = 64
    occlusion_weight: float = 0.0  # NeRO: L1 of the occlusion MLP vs the SDF-marched hit probability
    reflection: ReflectionLossConfig = field(default_factory=ReflectionLossConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)


@dataclass
class EvalConfig:
    mesh_resolution: int = 256
    fill_unseen: bool = True  # extract: outside space no training camera sees becomes solid (mesh/visibility.py)
    chamfer_samples: int = 100_000
    # NeRO's visible-surface Chamfer: test-view depth points thinned to one per cell of this size (world units)
    chamfer_visible_voxel: float = 0.01
    render_downscale: int = 1
    max_views: int | None = None
    surface: SurfaceRenderConfig = field(default_factory=SurfaceRenderConfig)


@dataclass
class Config:
    preset: str = "none"  # the preset this config was built from (lumisurf.presets); "none": the plain defaults
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    material: MaterialStageConfig = field(default_factory=MaterialStageConfig)
    voxels: VoxelConfig = field(default_factory=VoxelConfig)


# ----------------------------------------------------------------------------- (de)serialisation


def to_dict(cfg) -> dict:
    """Plain nested dict (tuples become lists) for YAML/JSON."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(cfg))))


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"config '{where or cls.__name__}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(where + k for k in unknown)}; known under '{where or '.'}': {sorted(names)}"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, where + key)
    return cls(**kwargs)


def _coerce(tp, value, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: '{value}' is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, key) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``a.b.c=value`` strings (value parsed as YAML) to a copy of ``cfg``."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like dotted.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise ConfigError(f"unknown config key '{key}'")
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"unknown config key '{key}'{_moved_hint(parts)}")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() != "" else None
    return from_dict(Config, data)


COMMON_SECTIONS = ("preset", "data", "train", "eval", "material")  # what every model kind's run reads


def changed_settings(cfg: Config, base: Config) -> list[str]:
    """Dotted keys whose value in ``cfg`` differs from ``base`` (e.g. its preset's defaults)."""
    changed: list[str] = []

    def walk(a, b, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in a:
                walk(a[k], b.get(k), f"{prefix}{k}.")
        elif a != b:
            changed.append(prefix[:-1])

    walk(to_dict(cfg), to_dict(base), "")
    return changed


def ignored_settings(cfg: Config, base: Config, reads: tuple[str, ...]) -> list[str]:
    """The settings changed from ``base`` that lie outside the sections ``reads`` and :data:`COMMON_SECTIONS`
    (what a model reading only those sections ignores)."""
    inside = lambda key, sec: key == sec or key.startswith(sec + ".")  # noqa: E731
    return [k for k in changed_settings(cfg, base) if not any(inside(k, s) for s in (*COMMON_SECTIONS, *reads))]


def _moved_hint(parts: list[str]) -> str:
    moved = moved_voxel_key(parts[1]) if len(parts) == 2 and parts[0] == "voxels" else None
    return f" (the voxel settings moved into sections: voxels.{moved})" if moved else ""


def save_config(cfg: Config, path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def load_config(path) -> Config:
    with open(path) as f:
        return from_dict(Config, migrate(yaml.safe_load(f) or {}))


def migrate(data: dict) -> dict:
    """Old run folders' keys in today's layout. Before the schedules read the training progress (2026-12-01)
    they held step lengths: ``optim.warmup_steps``, ``train.anneal_end``, ``schedule.grid_steps_per_level``;
    these become the same fractions of ``train.max_steps``. The per-sampler keys move into their sections.
    ``loss.segmentation.consistency_views`` was never read and is dropped. The flat voxel settings move into
    their sections (``voxel_config.migrate_voxels``)."""
    if isinstance(data.get("sampler"), dict):
        migrate_sampler(data["sampler"])
    if isinstance(data.get("voxels"), dict):
        migrate_voxels(data["voxels"])
    seg = (data.get("loss") or {}).get("segmentation") if isinstance(data.get("loss"), dict) else None
    if isinstance(seg, dict):
        seg.pop("consistency_views", None)
    train, optim, sched = (data.get(k) if isinstance(data.get(k), dict) else {} for k in ("train", "optim", "schedule"))
    total = max(int(train.get("max_steps", TrainConfig.max_steps)), 1)
    if "warmup_steps" in optim:
        optim["warmup"] = optim.pop("warmup_steps") / total
    if "anneal_end" in train:
        train["anneal_until"] = train.pop("anneal_end") / total
    if "grid_steps_per_level" in sched:
        per = sched.pop("grid_steps_per_level")
        grid = (data.get("model", {}).get("sdf", {}) or {}).get("grid", {}) or {}
        extra = max(int(grid.get("n_levels", 16)) - int(sched.get("grid_start_levels", 16)), 0)
        sched["grid_levels_until"] = per * extra / total
    return data


def merge(cfg: Config, patch: dict[str, Any]) -> Config:
    """Return ``cfg`` updated by a nested dict ``patch`` (used by presets)."""
    data = to_dict(cfg)
    _deep_update(data, patch)
    return from_dict(Config, data)


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v
