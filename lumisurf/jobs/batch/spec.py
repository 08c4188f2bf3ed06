"""Batch spec files (YAML): many scenes, one pipeline each; strict validation, one plan per scene.

Schema (unknown keys are errors)::

    out: runs/catalogue            # output root (--out replaces it); relative: to the current folder
    device: auto                   # auto | cpu | cuda (per task: a task given no GPU runs on its CPUs)
    seed: 0
    retries: 2                     # re-runs of a scene whose worker was lost; each resumes from its checkpoint
    checkpoint_minutes: 1.0        # checkpoint at least this often (what a lost worker can cost)
    pipeline:                      # every scene's; a scene may replace any of these keys
      preset: lumisurf
      max_minutes: 5               # training budget (or max_steps; both: whichever ends first)
      max_steps: null
      overrides: [dotted.key=value]
      extract: true                # RUN/mesh.ply
      mesh_resolution: null        # marching cubes (default: the preset's eval.mesh_resolution)
      material: null               # Stage II: {steps: 500, max_minutes: null, overrides: []}
      relight: []                  # .hdr maps to render the test split under (needs material)
      eval: true                   # RUN/metrics.json (after the other stages: it includes their metrics)
    scenes:
      - {name: builtin, data: null, overrides: [data.synthetic_views=24]}   # null: the built-in scene
      - {data: ${SHARED}/dtu_*}    # a glob: one scene per folder it matches, named after the folder

A scene's ``overrides`` come after the pipeline's. Paths are relative to the spec file; ``${SHARED}`` is the
environment variable SHARED, else ``<repo>/../shared/data``.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from lumisurf.config import from_dict
from lumisurf.errors import ConfigError
from lumisurf.jobs.spec_paths import NAME_RE, read_yaml_spec, resolve_dataset
from lumisurf.jobs.train import build_train_config


@dataclass
class MaterialStep:
    steps: int | None = None  # None: the material config's
    max_minutes: float | None = None
    overrides: tuple[str, ...] = ()


@dataclass
class Pipeline:
    preset: str = "lumisurf"
    max_minutes: float | None = None
    max_steps: int | None = None
    overrides: tuple[str, ...] = ()
    extract: bool = True
    mesh_resolution: int | None = None
    material: MaterialStep | None = None
    relight: tuple[str, ...] = ()
    eval: bool = True


@dataclass
class SceneEntry(Pipeline):
    name: str | None = None
    data: str | None = None


@dataclass
class BatchSpec:
    out: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    retries: int = 2
    checkpoint_minutes: float = 1.0
    pipeline: Pipeline = field(default_factory=Pipeline)
    scenes: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ScenePlan:
    """Everything one scene's task needs (plain values: it travels to Ray workers)."""

    name: str
    data: str | None  # absolute dataset folder; None: the built-in scene
    pipeline: Pipeline
    device: str
    seed: int
    checkpoint_minutes: float

    def fingerprint(self) -> str:
        """Changes when anything that shapes the scene's results changes (a re-run then starts afresh); how often
        it is checkpointed does not."""
        shaping = {k: v for k, v in asdict(self).items() if k != "checkpoint_minutes"}
        return hashlib.sha1(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def train_overrides(self) -> list[str]:
        return [*self.pipeline.overrides, "train.finalize=false", f"train.ckpt_every_minutes={self.checkpoint_minutes}"]


def load_batch(path: Path) -> tuple[BatchSpec, list[ScenePlan]]:
    """Parse, validate and expand a spec; every scene's training config is built (and checked) here."""
    path = Path(path)
    raw = read_yaml_spec(path, "batch spec")
    if not isinstance(raw, dict) or "scenes" not in raw:
        raise ConfigError(f"{path}: a batch spec is a mapping with a 'scenes' list (see lumisurf.jobs.batch.spec)")
    try:
        spec = from_dict(BatchSpec, raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if spec.retries < 0 or not spec.checkpoint_minutes > 0:
        raise ConfigError(f"{path}: retries must be >= 0 and checkpoint_minutes > 0")
    plans = [p for k, s in enumerate(spec.scenes) for p in _expand(spec, s, k, path)]
    if not plans:
        raise ConfigError(f"{path}: 'scenes' lists no scene")
    names = [p.name for p in plans]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: scene name(s) {twice} used twice (give the entries a 'name')")
    for p in plans:
        _check(p, path)
    return spec, plans


def _expand(spec: BatchSpec, raw, k: int, path: Path) -> list[ScenePlan]:
    """One plan per dataset of scene entry ``k`` (a glob gives several)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: scene {k + 1} must be a mapping (keys name, data, and pipeline keys)")
    merged = {
        **asdict(spec.pipeline),
        **{key: v for key, v in raw.items() if key != "overrides"},
        "overrides": list(spec.pipeline.overrides) + list(raw.get("overrides") or []),
    }
    try:
        entry = from_dict(SceneEntry, merged, f"scenes[{k}].")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    spec_dir = path.resolve().parent
    pipeline = Pipeline(**{f.name: getattr(entry, f.name) for f in fields(Pipeline)})
    pipeline = replace(pipeline, relight=tuple(str(resolve_dataset(e, spec_dir)) for e in pipeline.relight))
    plan = ScenePlan(entry.name or "", None, pipeline, spec.device, spec.seed, spec.checkpoint_minutes)
    if entry.data is None:
        return [replace(plan, name=entry.name or f"builtin-{k + 1}")]
    target = resolve_dataset(entry.data, spec_dir)
    if not any(c in str(target) for c in "*?["):
        return [replace(plan, name=entry.name or target.name, data=str(target))]
    matches = sorted(Path(m) for m in glob.glob(str(target)) if Path(m).is_dir())
    if not matches:
        raise ConfigError(f"{path}: scene {k + 1}: no folder matches {entry.data!r} ({target})")
    prefix = f"{entry.name}-" if entry.name else ""
    return [replace(plan, name=prefix + m.name, data=str(m.resolve())) for m in matches]


def _check(plan: ScenePlan, path: Path) -> None:
    """The scene's name (a folder name) and its training config (preset, keys, values) are valid."""
    if not NAME_RE.match(plan.name):
        raise ConfigError(f"{path}: scene name {plan.name!r} must be letters, digits and _.+=- (it names a folder)")
    p = plan.pipeline
    if p.max_minutes is None and p.max_steps is None:
        raise ConfigError(f"{path}: scene '{plan.name}': give the pipeline a max_minutes or max_steps budget")
    if p.relight and p.material is None:
        raise ConfigError(f"{path}: scene '{plan.name}': relight needs the material stage (material: {{}})")
    try:
        build_train_config(None, p.preset, p.max_steps, p.max_minutes, plan.device, plan.seed, plan.train_overrides())
    except ConfigError as exc:
        raise ConfigError(f"{path}: scene '{plan.name}': {exc}") from None
    for env in p.relight:
        if not Path(env).is_file():
            raise ConfigError(f"{path}: scene '{plan.name}': relight map {env} not found")
