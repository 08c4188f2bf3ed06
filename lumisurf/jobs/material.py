"""Run-folder side of Stage II: ``lumisurf material RUN`` and loading a fitted material stage.

Stage II reads ``RUN/mesh.ply`` (extracted first when missing), the run's dataset and normalisation;
it writes ``RUN/material/`` (see ``train/material_stage.py``) and, through ``mesh/material_export.py``,
``RUN/material/export/`` (per-vertex PLY, OBJ + MTL + textures, GLB, Mitsuba 3 scene).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lumisurf.config import Config, apply_overrides, load_config, save_config
from lumisurf.data.hdr import write_hdr
from lumisurf.data.load import load_scene_normalized_as
from lumisurf.data.scene import Normalization, SceneData
from lumisurf.errors import LumisurfError
from lumisurf.fields.material import IndirectLight, MaterialField
from lumisurf.jobs.extract import extract_run
from lumisurf.jobs.material_eval import preview_strip
from lumisurf.jobs.material_init import warm_start
from lumisurf.jobs.restore import load_run
from lumisurf.mesh.material_export import export_materials
from lumisurf.renderers.bounce import MeshBounce, fibonacci_sphere, visibility_table
from lumisurf.renderers.mesh_tracer import MeshTracer
from lumisurf.shading.envmap import EnvironmentMap
from lumisurf.shading.envmap_neural import NeuralEnvironment
from lumisurf.shading.lighting import Lighting, find_env_file, load_env
from lumisurf.train.device import resolve_device
from lumisurf.train.loop import LoopFiles
from lumisurf.train.material_stage import MaterialTrainer, initial_env_level, save_material_state, trace_split
from lumisurf.train.run_dir import RunDir


@dataclass
class MaterialRun:
    run: RunDir
    cfg: Config  # the run's config with the Stage II section used
    normalization: Normalization
    tracer: MeshTracer  # over the mesh in the normalised frame
    vertices_world: np.ndarray
    faces: np.ndarray
    field: MaterialField
    lighting: Lighting
    device: torch.device
    summary: dict
    bounce_table: torch.Tensor | None = None  # [V, D] visibility of the mesh (computed on first use)

    @property
    def root(self) -> Path:
        return self.run.root / "material"

    def bounce(self, env, progress: bool = False) -> MeshBounce:
        """One-bounce light for occluded directions under ``env`` (the visibility table is kept)."""
        if self.bounce_table is None:
            self.bounce_table = bounce_table(self.tracer, self.cfg.material.bounce_dirs, progress)
        return MeshBounce(self.tracer, self.field, env, self.bounce_table)


def bounce_table(tracer: MeshTracer, n_dirs: int, progress: bool = False) -> torch.Tensor:
    return visibility_table(tracer, fibonacci_sphere(n_dirs), progress=progress)


def material_dir(run: RunDir) -> Path:
    return run.root / "material"


def load_normalized_mesh(
    run: RunDir, normalization: Normalization, device
) -> tuple[MeshTracer, np.ndarray, np.ndarray]:
    import trimesh

    if not run.mesh_path.exists():
        raise LumisurfError(f"{run.mesh_path} is missing; run `lumisurf extract {run.root}` first")
    mesh = trimesh.load(run.mesh_path, process=False, force="mesh")
    v_world, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    v_norm = np.asarray(normalization.to_normalized(v_world), np.float32)
    return MeshTracer(v_norm, faces), v_world, faces


def build_lighting(cfg: Config, scene: SceneData, init_level: float) -> Lighting:
    m = cfg.material
    if m.lighting == "known":
        name = scene.meta.get("env_map")
        if name is None:
            raise LumisurfError("material.lighting=known: the dataset names no environment map (env_map)")
        env = load_env(find_env_file(cfg.data.path, name), height=4 * m.env_height)
    else:
        env = learned_env(m, init_level)
    return Lighting(env, IndirectLight() if m.indirect == "learned" else None)


def learned_env(m, init_level: float = 0.5, levels: int | None = None) -> EnvironmentMap | NeuralEnvironment:
    """The learned environment ``material.env_model`` names (``levels`` overrides ``env_levels``)."""
    h = m.env_height
    if m.env_model == "mlp":
        return NeuralEnvironment(h, 2 * h, init_level, m.env_hidden, m.env_layers, m.env_freqs)
    return EnvironmentMap(h, 2 * h, init=init_level, levels=m.env_levels if levels is None else levels)


def material_files(run: RunDir) -> LoopFiles:
    """Stage II's checkpoint and scalars, inside ``RUN/material/``."""
    out = material_dir(run)
    return LoopFiles(out / "ckpt" / "last.pt", out / "scalars.csv")


def _checked_material_config(
    run: RunDir, overrides: list[str], steps: int | None, max_minutes: float | None, force: bool, resume: bool
) -> Config:
    """The Stage II config of a new fit (the run's, with ``overrides``) or of a resumed one (the one it
    started with); refuses to replace a finished fit without ``force`` and to resume without a checkpoint."""
    out, files = material_dir(run), material_files(run)
    if resume:
        if force:
            raise LumisurfError("--resume continues the fit in RUN/material; --force starts a new one: pick one")
        if not files.checkpoint.exists():
            raise LumisurfError(f"--resume: no Stage II checkpoint at {files.checkpoint}")
        if overrides:
            raise LumisurfError("--resume keeps the config the fit started with: drop the material.* overrides")
        extra = [f"material.steps={steps}"] if steps is not None else []
        extra += [f"material.max_minutes={max_minutes}"] if max_minutes is not None else []
        return apply_overrides(load_config(out / "config.yaml"), extra)
    if ((out / "material.pt").exists() or files.checkpoint.exists()) and not force:
        raise LumisurfError(
            f"{out} holds a Stage II fit; pass --force to refit the materials or --resume to continue it"
        )
    if force and files.checkpoint.exists():  # a later --resume must not find the replaced fit's checkpoint
        files.checkpoint.unlink()
    return material_config(run, overrides, steps, max_minutes)


def material_config(run: RunDir, overrides: list[str], steps: int | None, max_minutes: float | None) -> Config:
    cfg = run.load_config()
    extra = [o if o.startswith("material.") else f"material.{o}" for o in overrides]
    if steps is not None:
        extra.append(f"material.steps={steps}")
    if max_minutes is not None:
        extra.append(f"material.max_minutes={max_minutes}")
    return apply_overrides(cfg, extra)


def material_job(
    root: Path,
    overrides: list[str],
    steps: int | None = None,
    max_minutes: float | None = None,
    device: str | None = None,
    force: bool = False,
    progress: bool = True,
    export: bool = True,
    resume: bool = False,
) -> dict:
    """Fit Stage II for run ``root``; returns a summary dict (also in RUN/material/summary.json). ``resume``
    continues an interrupted fit from ``RUN/material/ckpt/last.pt`` with the config it started with
    (``steps`` / ``max_minutes`` may extend its budget)."""

    run = RunDir(root)
    out = material_dir(run)
    files = material_files(run)
    cfg = _checked_material_config(run, overrides, steps, max_minutes, force, resume)
    dev = resolve_device(device or cfg.train.device)
    if not run.mesh_path.exists():
        extract_run(load_run(root, str(dev)), progress=progress)
    normalization = run.load_normalization()
    scene = load_scene_normalized_as(cfg.data, normalization)
    tracer, v_world, faces = load_normalized_mesh(run, normalization, dev)
    split = scene.split("train")
    split = type(split)(split.cameras.to(dev), split.images, split.masks, split.files, split.normals)
    hits = trace_split(tracer, split)
    if len(hits) == 0:
        raise LumisurfError("no training pixel hits the mesh: is RUN/mesh.ply empty or misplaced?")
    torch.manual_seed(cfg.train.seed)
    field = MaterialField(cfg.material).to(dev)
    lighting = build_lighting(cfg, scene, initial_env_level(hits)).to(dev)
    hits, init_info = warm_start(root, cfg, field, lighting, hits, dev, torch.Generator().manual_seed(cfg.train.seed))
    table = None
    if cfg.material.indirect == "bounce":
        table = bounce_table(tracer, cfg.material.bounce_dirs, progress)
        lighting.indirect = MeshBounce(tracer, field, lighting.env, table)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    env_lr = cfg.material.baked_env_lr if "init_env_mean" in init_info else cfg.material.env_lr
    init_info["env_lr"] = env_lr if cfg.material.lighting == "learned" else 0.0
    trainer = MaterialTrainer(field, lighting, tracer, hits, cfg, files, env_lr, progress)
    result = trainer.fit(resume=resume)
    summary = {
        **trainer.last_scalars,
        "steps": result.steps,
        "seconds": result.train_seconds,
        **init_info,
        "surface_pixels": len(hits),
        "tracer": tracer.backend,
    }
    save_material_state(out / "material.pt", field, lighting, summary)
    _write_env(lighting, out / "env_map.hdr")
    loaded = MaterialRun(run, cfg, normalization, tracer, v_world, faces, field, lighting, dev, summary, table)
    _preview(loaded, scene, out / "preview.png")
    if export:
        summary["export"] = {k: str(v) for k, v in export_run(loaded, progress=progress, force=force).items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _write_env(lighting: Lighting, path: Path) -> None:
    with torch.no_grad():
        write_hdr(path, lighting.env.image().float().cpu().numpy())


def world_material_fn(mrun: MaterialRun):
    """Material callable over WORLD points (numpy), for the exporters."""

    def fn(points: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.as_tensor(np.asarray(mrun.normalization.to_normalized(points), np.float32), device=mrun.device)
        with torch.no_grad():
            m = mrun.field(x)
        return {
            "albedo": m["albedo"].cpu().numpy(),
            "roughness": m["roughness"][:, 0].cpu().numpy(),
            "metallic": m["metallic"][:, 0].cpu().numpy(),
        }

    return fn


def export_run(mrun: MaterialRun, progress: bool = True, force: bool = False) -> dict:
    env = mrun.root / "env_map.hdr"
    return export_materials(
        mrun.root / "export",
        mrun.vertices_world.astype(np.float32),
        mrun.faces,
        world_material_fn(mrun),
        texture_size=mrun.cfg.material.texture_size,
        env_map=env if env.exists() else None,
        progress=progress,
        force=force,
    )


def load_material_run(root: Path, device: str | None = None) -> MaterialRun:
    run = RunDir(root)
    out = material_dir(run)
    if not (out / "material.pt").exists():
        raise LumisurfError(f"{root}: no Stage II materials ({out / 'material.pt'}); run `lumisurf material {root}`")
    cfg = load_config(out / "config.yaml")
    dev = resolve_device(device or cfg.train.device)
    normalization = run.load_normalization()
    tracer, v_world, faces = load_normalized_mesh(run, normalization, dev)
    state = torch.load(out / "material.pt", map_location=dev, weights_only=True)
    field = MaterialField(cfg.material).to(dev)
    field.load_state_dict(state["field"])
    m = cfg.material
    levels = 1 + sum(k.startswith("env.coarse.") for k in state["lighting"])
    env = (
        EnvironmentMap(*state["lighting"]["env.log_radiance"].shape[:2], levels=levels)
        if "env.log_radiance" in state["lighting"]
        else learned_env(m, levels=levels)
    )
    lighting = Lighting(env, IndirectLight() if m.indirect == "learned" else None).to(dev)
    lighting.load_state_dict(state["lighting"])
    field.eval()
    mrun = MaterialRun(run, cfg, normalization, tracer, v_world, faces, field, lighting, dev, state.get("summary", {}))
    if m.indirect == "bounce":
        lighting.indirect = mrun.bounce(lighting.env)
    return mrun


def _preview(mrun: MaterialRun, scene: SceneData, path: Path) -> None:
    """GT | render | albedo | roughness | metallic of the first test view (half resolution for speed)."""

    split = scene.splits.get("test") or scene.split("train")
    preview_strip(mrun, split, 0, path)
