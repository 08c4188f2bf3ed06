#!/usr/bin/env python
"""Stage I + Stage II + material evaluation on the synthetic glossy scenes: one table of every variant.

    python benchmarks/materials.py                                         # 3 scenes x all variants
    python benchmarks/materials.py --scenes glossy_spot --variants scratch stage1 known --name spot

Per scene and seed a Stage I run (``--preset``, ``--stage1-minutes``) is trained and extracted once into
``--runs-root/<scene>-<preset>-s<seed>`` (kept when it exists) and evaluated (test PSNR, Chamfer). Each Stage II
variant (``VARIANTS``: overrides of ``material.*``) runs in ``.../stage2/<variant>``, a folder that links the Stage
I run's files, for ``--stage2-minutes``; then its material errors on the test split, relight PSNR / SSIM (raw and
per-channel scale-aligned) on the relight split and the Monte-Carlo noise of one relit view are measured. Each
step runs in its own process, one at a time; a variant whose ``row.json`` exists is read, not redone.
Written: ``benchmarks/results/<name>.csv`` and ``<name>.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# name -> material.* overrides (what each variant changes from the Stage II defaults)
VARIANTS: dict[str, list[str]] = {
    "default": [],
    # issue 35: the light baked at width 0 with Stage I's roughness number as GGX roughness (the warm start before)
    "sharp": ["init_split=sharp"],
    "nodiel": ["dielectric_weight=0"],
    "scratch": ["init=constant"],
    "stage1": ["init=stage1"],
    "materials_only": ["init=materials"],
    "light_only": ["init=light"],
    "known": ["init=materials", "lighting=known"],
    "scratch_known": ["init=constant", "lighting=known"],
    "bounce": ["init=stage1", "indirect=bounce"],
    "decor": ["init=stage1", "loss=decorrelated"],
    "decor_scratch": ["init=constant", "loss=decorrelated"],
    "decor_known": ["init=materials", "lighting=known", "loss=decorrelated"],
    "decor_dielectric": ["init=stage1", "loss=decorrelated", "dielectric_weight=0.02"],
    "decor_bounce": ["init=stage1", "loss=decorrelated", "indirect=bounce"],
    "env16": ["init=stage1", "env_height=16"],
    "c2f": ["init=stage1", "env_levels=4"],
    "c2f_tv": ["init=stage1", "env_levels=4", "env_tv_weight=0.05"],
    "tv05": ["init=stage1", "env_tv_weight=0.05"],
    "frozen": ["init=stage1", "env_lr=0"],
    "frozen_diel": ["init=stage1", "env_lr=0", "dielectric_weight=0.05"],
    "slow_diel": ["init=stage1", "env_lr=0.002", "dielectric_weight=0.05"],
    "known_nobounce": ["init=materials", "lighting=known", "relight_indirect=none"],
    "diel05": ["init=stage1", "dielectric_weight=0.05"],
    "diel20": ["init=stage1", "dielectric_weight=0.2"],
    "diel20_c2f": ["init=stage1", "dielectric_weight=0.2", "env_levels=4"],
    "diel20_scratch": ["init=constant", "dielectric_weight=0.2"],
    "binary": ["init=stage1", "metallic_binary_weight=0.05"],
    "white": ["init=stage1", "env_white_weight=0.1"],
    "tv": ["init=stage1", "env_tv_weight=0.01"],
    "priors": ["init=stage1", "metallic_binary_weight=0.05", "env_white_weight=0.1", "env_tv_weight=0.01"],
    # issue 35: a smooth light that learns from Stage I's bake, free or tethered to it; then one prior each
    "mlp_free": ["init=stage1", "env_model=mlp", "baked_env_lr=0.002"],
    "mlp_tether": ["init=stage1", "env_model=mlp", "baked_env_lr=0.002", "env_tether_weight=0.1"],
    "texel_tether": ["init=stage1", "baked_env_lr=0.02", "env_tether_weight=0.1"],
    "rough08": ["init=stage1", "roughness_min=0.08"],
    "log_l1": ["init=stage1", "loss=log_l1"],
    "tangent": ["init=stage1", "smooth_tangent=true"],
    "saturation": ["init=stage1", "saturation_weight=1.0"],
    "diel_albedo": ["init=stage1", "dielectric_albedo_weight=0.05"],
    "diel_albedo_gated": ["init=stage1", "dielectric_albedo_weight=0.05", "dielectric_albedo_gate=stage1"],
    "stratified": ["init=stage1", "stratified=true"],
    "strat_mlp_tether": [
        "init=stage1",
        "stratified=true",
        "env_model=mlp",
        "baked_env_lr=0.002",
        "env_tether_weight=0.1",
    ],
}
KEYS = [
    "relight_psnr",
    "relight_psnr_scaled",
    "relight_ssim",
    "albedo_psnr",
    "albedo_psnr_aligned",
    "roughness_mae",
    "metallic_mae",
    "roughness_mean",
    "metallic_mean",
    "noise_psnr_train",
    "noise_psnr_render",
    "train_psnr",
    "steps",
    "seconds",
]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lumisurf.cli", *args]


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        raise RuntimeError(f"{cmd[3]} failed (rc {rc}); see {log}")


def stage1(
    scene: Path, preset: str, seed: int, minutes: float, root: Path, overrides: list[str], tag: str = ""
) -> tuple[Path, dict]:
    """Train + extract + eval the Stage I run once (``overrides``: KEY=VALUE on the preset; ``tag`` names the
    run folder apart); returns its folder and test metrics."""
    run = root / f"{scene.name}-{preset}{tag}-s{seed}"
    log = root / f"{run.name}.log"
    root.mkdir(parents=True, exist_ok=True)
    if not (run / "ckpt" / "last.pt").exists():
        _run(
            _cli(
                "train",
                "--data",
                str(scene),
                "--preset",
                preset,
                "--seed",
                str(seed),
                "--max-minutes",
                str(minutes),
                "--out",
                str(run),
                "--force",
                "--no-progress",
                *overrides,
            ),
            log,
        )
    if not (run / "mesh.ply").exists():
        _run(_cli("extract", str(run)), log)
    if not (run / "metrics.json").exists():
        _run(_cli("eval", str(run)), log)
    return run, json.loads((run / "metrics.json").read_text())


def variant_folder(run: Path, name: str) -> Path:
    """``run/stage2/<name>``: a run folder whose Stage I files are links to ``run``'s."""
    out = run / "stage2" / name
    out.mkdir(parents=True, exist_ok=True)
    for f in ("config.yaml", "normalization.json", "mesh.ply", "ckpt"):
        if not (out / f).exists():
            os.symlink(run / f, out / f)
    return out


MEASURE = """
import json, sys
from pathlib import Path
from lumisurf.data.load import load_scene_normalized_as
from lumisurf.jobs.evaluate import stage2_metrics
from lumisurf.jobs.material import load_material_run
from lumisurf.jobs.material_eval import mc_noise_psnr
from lumisurf.shading.lighting import find_env_file
root = Path(sys.argv[1])
mrun = load_material_run(root)
mrun.cfg.eval.max_views = int(sys.argv[2]) if int(sys.argv[2]) > 0 else None
scene = load_scene_normalized_as(mrun.cfg.data, mrun.normalization)
m = stage2_metrics(root, scene, progress=False)
env = find_env_file(mrun.cfg.data.path, scene.meta["relight_env_map"])
split, c = scene.split("relight"), mrun.cfg.material
m["noise_psnr_train"] = mc_noise_psnr(mrun, split, env, 1, c.light_samples, c.stratified)
m["noise_psnr_render"] = mc_noise_psnr(mrun, split, env, c.render_spp, c.render_light_samples, c.render_stratified)
(root / "material" / "metrics.json").write_text(json.dumps(m, indent=2))
"""


def stage2(run: Path, name: str, overrides: list[str], minutes: float, eval_views: int) -> dict:
    out = variant_folder(run, name)
    row_file = out / "row.json"
    if row_file.exists():
        return json.loads(row_file.read_text())
    log = out / "log.txt"
    start = time.perf_counter()
    _run(
        _cli(
            "material", str(out), "--max-minutes", str(minutes), "--no-export", "--force", "--no-progress", *overrides
        ),
        log,
    )
    _run([sys.executable, "-c", MEASURE, str(out), str(eval_views)], log)
    summary = json.loads((out / "material" / "summary.json").read_text())
    metrics = json.loads((out / "material" / "metrics.json").read_text())
    row = {
        **metrics,
        "train_psnr": summary.get("psnr"),
        "steps": summary.get("steps"),
        "seconds": summary.get("seconds"),
        "init": summary.get("init"),
        "wall_seconds": time.perf_counter() - start,
    }
    row_file.write_text(json.dumps(row, indent=2))
    return row


def fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_results(rows: list[dict], name: str, args) -> Path:
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    id_keys = sorted({k for r in rows for k in r if "_id" in k})
    fields = ["scene", "seed", "variant", "stage1_psnr", "stage1_chamfer"] + KEYS + id_keys
    with open(res / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    cols = ["scene", "seed", "variant"] + KEYS[:9] + ["noise_psnr_train", "noise_psnr_render", "steps"]
    lines = [
        f"# Materials benchmark `{name}`",
        "",
        f"Stage I `{' '.join([args.preset, *args.stage1_set])}` {args.stage1_minutes} min, "
        f"Stage II {args.stage2_minutes} min, one process at a time on this machine; "
        f"errors over the first {args.eval_views or 'all'} test and relight views. "
        "Relight PSNR: sRGB over the background, raw and after a per-channel "
        "least-squares scale of the linear render (`_scaled`). Albedo PSNR linear, raw and scale-aligned. "
        "MAE over pixels where both GT and mesh are hit. Noise: PSNR of one relit view against an "
        "independent re-render, +3.01 dB (training sample count / render settings).",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    if id_keys:
        lines += [
            "",
            "Per GT material id:",
            "",
            "| scene | variant | " + " | ".join(id_keys) + " |",
            "|---|---|" + "---|" * len(id_keys),
        ]
        lines += [
            "| " + " | ".join([r["scene"], r["variant"]] + [fmt(r.get(k)) for k in id_keys]) + " |"
            for r in rows
            if any(k in r for k in id_keys)
        ]
    stage1_rows = {(r["scene"], r["seed"]): r for r in rows}
    lines += ["", "Stage I:", "", "| scene | seed | test PSNR | Chamfer |", "|---|---|---|---|"]
    lines += [
        f"| {s} | {sd} | {fmt(r['stage1_psnr'])} | {fmt(r['stage1_chamfer'])} |" for (s, sd), r in stage1_rows.items()
    ]
    (res / f"{name}.md").write_text("\n".join(lines) + "\n")
    return res / f"{name}.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=["glossy_bunny", "glossy_spot", "two_materials"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--preset", default="nero")
    p.add_argument(
        "--stage1-set", nargs="*", default=[], help="Stage I overrides KEY=VALUE (e.g. model.nero.ide_bands=octave)"
    )
    p.add_argument("--stage1-tag", default="", help="suffix of the Stage I run folder (runs with --stage1-set)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--stage1-minutes", type=float, default=5.0)
    p.add_argument("--stage2-minutes", type=float, default=3.0)
    p.add_argument("--runs-root", type=Path, default=ROOT / "runs" / "materials")
    p.add_argument("--eval-views", type=int, default=8, help="test / relight views measured (0: all)")
    p.add_argument("--name", default="materials")
    args = p.parse_args(argv)
    rows = []
    for scene_name in args.scenes:
        scene = SHARED / scene_name if not Path(scene_name).is_dir() else Path(scene_name)
        if not scene.is_dir():
            raise SystemExit(f"materials: no dataset at {scene}")
        for seed in args.seeds:
            run, m1 = stage1(
                scene, args.preset, seed, args.stage1_minutes, args.runs_root, args.stage1_set, args.stage1_tag
            )
            for v in args.variants:
                print(f"[materials] {scene.name} s{seed} {v}", flush=True)
                row = stage2(run, v, VARIANTS[v], args.stage2_minutes, args.eval_views)
                rows.append(
                    {
                        "scene": scene.name,
                        "seed": seed,
                        "variant": v,
                        "stage1_psnr": m1.get("psnr"),
                        "stage1_chamfer": m1.get("chamfer"),
                        **row,
                    }
                )
                print(write_results(rows, args.name, args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
