"""Typed, nested configuration: dataclasses, ``Literal`` choices, unknown keys rejected.

A run is described by one :class:`Config`. Presets (``lumisurf.presets``) fill it for a method;
``dotted.key=value`` overrides on the command line change single fields, type-checked.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import yaml

from lumisurf.encodings.hash_grid import HashGridConfig
from lumisurf.errors import ConfigError


@dataclass
class DataConfig:
    path: Optional[str] = None  # None: the built-in synthetic scene
    format: Literal["auto", "blender", "neus", "llff", "ngp", "colmap"] = "auto"
    background: Literal["white", "black", "random"] = "white"  # colour behind masked (RGBA) images
    normalization: Literal["auto", "scale_mat", "visual_hull", "camera_rig", "identity"] = "auto"
    holdout_every: int = 8  # formats without a test split: every k-th view is a test view
    max_views: Optional[int] = None  # keep an evenly spaced subset of training views
    synthetic_resolution: int = 64
    synthetic_views: int = 40


@dataclass
class SDFConfig:
    backend: Literal["mlp", "hash", "hybrid"] = "mlp"
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


@dataclass
class ColorConfig:
    hidden: int = 256
    layers: int = 4
    multires_view: int = 4
    view_encoding: Literal["frequency", "sh"] = "frequency"
    sh_degree: int = 4
    weight_norm: bool = True


@dataclass
class BackgroundConfig:
    # auto: 'constant' (the data.background colour) when the dataset has masks, else 'nerf++'
    kind: Literal["auto", "nerf++", "constant"] = "auto"
    hidden: int = 256
    layers: int = 8
    multires: int = 10
    multires_view: int = 4
    n_samples: int = 32


@dataclass
class ModelConfig:
    sdf: SDFConfig = field(default_factory=SDFConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    init_variance: float = 0.3  # inv_s = exp(10 * variance)


@dataclass
class SamplerConfig:
    n_samples: int = 64  # stratified samples inside the unit sphere
    n_importance: int = 64  # NeuS up-sampled samples (split over up_sample_steps)
    up_sample_steps: int = 4
    perturb: bool = True
    # nerfacc-style occupancy grid: rays march only occupied cells (near/far tightened to them, rays
    # through empty space skip the field); refreshed from the SDF every `occupancy_every` steps
    occupancy: bool = False
    occupancy_resolution: int = 64
    occupancy_every: int = 32
    occupancy_march_steps: int = 128


@dataclass
class LossConfig:
    rgb: Literal["l1", "l2", "charbonnier", "huber"] = "l1"
    rgb_weight: float = 1.0
    eikonal_weight: float = 0.1
    mask_weight: float = 0.1  # used only when the dataset has masks
    huber_delta: float = 0.1
    curvature_weight: float = 0.0  # Neuralangelo: mean |laplacian| (finite-difference normals only)
    grid_tv_weight: float = 0.0  # total variation of the hash-grid features (dense levels)


@dataclass
class ScheduleConfig:
    """Step schedules (lengths in steps of ``train.max_steps``; shrunk with a --max-minutes budget)."""

    grid_start_levels: int = 16  # coarse-to-fine: levels active at step 0 (>= n_levels: all)
    grid_steps_per_level: int = 0  # one more level every k steps (0: all levels from the start)
    fd_eps_mode: Literal["exp", "grid"] = "exp"  # exp: start -> end over max_steps; grid: finest active cell
    fd_eps_start: float = 5e-3
    fd_eps_end: float = 5e-4


@dataclass
class OptimConfig:
    lr: float = 5e-4
    warmup_steps: int = 500
    lr_min_factor: float = 0.05  # cosine decay to lr * lr_min_factor at max_steps
    weight_decay: float = 0.0


@dataclass
class TrainConfig:
    max_steps: int = 300_000
    max_minutes: Optional[float] = None
    batch_rays: int = 512
    anneal_end: int = 50_000  # NeuS cos-anneal ratio reaches 1 here
    val_every: int = 500
    val_downscale: int = 2
    ckpt_every: int = 1000
    log_every: int = 10
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    chunk_rays: int = 1024  # rays per forward when rendering full images
    # after training: extract the mesh, render the test views, evaluate. None (auto): only for the
    # built-in scene; dataset runs are finished with `lumisurf extract` / `lumisurf eval`.
    finalize: Optional[bool] = None


@dataclass
class EvalConfig:
    mesh_resolution: int = 256
    chamfer_samples: int = 100_000
    render_downscale: int = 1
    max_views: Optional[int] = None


@dataclass
class Config:
    preset: str = "neus"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


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
        raise ConfigError(f"unknown config key(s) {sorted(where + k for k in unknown)}; "
                          f"known under '{where or '.'}': {sorted(names)}")
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
            raise ConfigError(f"unknown config key '{key}'")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() != "" else None
    return from_dict(Config, data)


def save_config(cfg: Config, path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def load_config(path) -> Config:
    with open(path) as f:
        return from_dict(Config, yaml.safe_load(f) or {})


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
