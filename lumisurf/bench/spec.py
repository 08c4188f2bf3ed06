"""Ablation spec files (YAML): load, validate strictly, and build every variant's :class:`Config`.

Schema (unknown keys are errors)::

    dataset: ${SHARED}/glossy_bunny   # required; relative to the spec file, absolute, ${SHARED}, or null
    minutes: 5                        # training budget per variant (training time; evaluation paused)
    eval_every: 30                    # seconds of training time between evaluations
    target_psnr: 25                   # dB
    target_chamfer: 0.01              # world units (optional; datasets with a GT mesh)
    eval_views: 4                     # test views per evaluation
    eval_downscale: 2                 # render / compare at 1/2 resolution
    mesh_resolution: 128              # marching cubes for the Chamfer distance
    chamfer_samples: 20000
    seed: 0
    device: auto                      # auto | cpu | cuda
    overrides: [dotted.key=value]     # applied to every variant, before its own
    variants:
      - {name: baseline, preset: neus, overrides: [loss.eikonal_weight=0]}

``${SHARED}`` is the environment variable SHARED, else ``<repo>/../shared/data``; ``dataset: null``
is the built-in synthetic scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from lumisurf.config import Config, apply_overrides, from_dict
from lumisurf.errors import ConfigError
from lumisurf.jobs.spec_paths import NAME_RE, read_yaml_spec, resolve_dataset
from lumisurf.presets import preset_config


@dataclass
class VariantSpec:
    name: str = ""
    preset: str = ""
    overrides: tuple[str, ...] = ()


@dataclass
class AblationSpec:
    dataset: str | None = None
    minutes: float = 5.0
    eval_every: float = 30.0
    target_psnr: float = 25.0
    target_chamfer: float | None = None
    eval_views: int = 4
    eval_downscale: int = 2
    mesh_resolution: int = 128
    chamfer_samples: int = 20_000
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    overrides: tuple[str, ...] = ()
    variants: tuple[VariantSpec, ...] = ()
    # filled by load_spec (not spec keys)
    name: str = field(default="", metadata={"internal": True})
    source: Path | None = field(default=None, metadata={"internal": True})


SPEC_KEYS = [k for k in AblationSpec.__dataclass_fields__ if k not in ("name", "source")]


def load_spec(path: Path) -> AblationSpec:
    """Parse and validate a spec file (keys, types, ranges, dataset folder). Raises ConfigError."""
    return parse_spec(read_yaml_spec(path, "ablation spec"), Path(path))


def parse_spec(raw, path: Path) -> AblationSpec:
    """Validate the YAML mapping ``raw`` of spec file ``path`` (relative datasets resolve beside it)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an ablation spec must be a mapping with keys {SPEC_KEYS}")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {SPEC_KEYS}")
    for key in ("dataset", "variants"):
        if key not in raw:
            raise ConfigError(f"{path}: missing required key '{key}' (dataset: null is the built-in scene)")
    try:
        spec = from_dict(AblationSpec, raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    _check_values(spec, path)
    dataset = resolve_dataset(spec.dataset, path.resolve().parent)
    if dataset is not None and not dataset.is_dir():
        raise ConfigError(f"{path}: dataset folder {dataset} not found (from dataset: {spec.dataset!r})")
    return replace(spec, dataset=None if dataset is None else str(dataset), name=path.stem, source=path)


def _check_values(spec: AblationSpec, path: Path) -> None:
    positive = {
        "minutes": spec.minutes,
        "eval_every": spec.eval_every,
        "eval_views": spec.eval_views,
        "eval_downscale": spec.eval_downscale,
        "chamfer_samples": spec.chamfer_samples,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{path}: {key} must be > 0, got {value!r}")
    if spec.mesh_resolution < 8:
        raise ConfigError(f"{path}: mesh_resolution must be >= 8, got {spec.mesh_resolution}")
    if spec.target_chamfer is not None and not spec.target_chamfer > 0:
        raise ConfigError(f"{path}: target_chamfer must be > 0 (or omitted), got {spec.target_chamfer!r}")
    if not spec.variants:
        raise ConfigError(f"{path}: 'variants' must list at least one variant")
    seen: set[str] = set()
    for k, v in enumerate(spec.variants):
        if not v.name or not NAME_RE.match(v.name):
            raise ConfigError(
                f"{path}: variant {k + 1}: name {v.name!r} must be non-empty letters, digits "
                f"and _.+=- (it names a folder)"
            )
        if not v.preset:
            raise ConfigError(f"{path}: variant '{v.name}': missing 'preset'")
        if v.name in seen:
            raise ConfigError(f"{path}: variant name '{v.name}' is used twice")
        seen.add(v.name)


def select(spec: AblationSpec, only: list[str] | None = None, minutes: float | None = None) -> AblationSpec:
    """The spec restricted to the variants named in ``only`` (spec order kept), with ``minutes`` replaced."""
    if minutes is not None:
        if not minutes > 0:
            raise ConfigError(f"--minutes must be > 0, got {minutes}")
        spec = replace(spec, minutes=float(minutes))
    if only:
        names = [v.name for v in spec.variants]
        missing = [n for n in only if n not in names]
        if missing:
            raise ConfigError(f"--only: no variant(s) {missing} in {spec.source}; the spec has {names}")
        spec = replace(spec, variants=tuple(v for v in spec.variants if v.name in only))
    return spec


def variant_config(spec: AblationSpec, variant: VariantSpec) -> Config:
    """The full config of one variant: preset, then the spec's data/seed/budget/device, then the
    spec-wide overrides, then the variant's own."""
    cfg = preset_config(variant.preset)
    cfg.data.path = spec.dataset
    cfg.train.seed, cfg.train.max_minutes, cfg.train.device = spec.seed, spec.minutes, spec.device
    return apply_overrides(cfg, list(spec.overrides) + list(variant.overrides))


def build_configs(spec: AblationSpec) -> dict[str, Config]:
    """Every variant's config, or one ConfigError listing every invalid variant (nothing trained)."""
    configs, errors = {}, []
    for v in spec.variants:
        try:
            configs[v.name] = variant_config(spec, v)
        except ConfigError as exc:
            errors.append(f"  - {v.name} (preset {v.preset}): {exc}")
    if errors:
        raise ConfigError(
            f"{spec.source}: {len(errors)} of {len(spec.variants)} variant(s) invalid, nothing "
            f"was trained:\n" + "\n".join(errors)
        )
    return configs
