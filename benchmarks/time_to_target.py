"""Time to target: presets x datasets under the same wall-clock TRAINING budget, evaluated along the way.

Every run trains with its preset's trainer (neural field or sparse voxels) for ``--minutes`` of training time (the
schedules read the progress of that budget's clock, as ``lumisurf train --max-minutes`` does). Every
``--eval-every`` seconds of training time the clock is paused and the model is evaluated:

* PSNR: mean over ``--eval-views`` evenly spaced test views rendered at downscale 2, ground truth
  composited on the same background color as training (``data.background``);
* Chamfer (datasets with a GT mesh): marching cubes at ``--mesh-resolution`` (128) in the normalised
  frame, mapped to the dataset's world frame with the scene normalisation, 20k samples each way.

Outputs in ``--out``: ``time_to_target.csv`` (one row per evaluation), ``time_to_target.md`` (the summary
table also printed), ``time_to_target.png`` (metric vs training seconds, one panel per dataset x metric)
and ``runs/<dataset>-<preset>/`` (normalisation + the last extracted mesh, world frame).
Time-to-target is the training time of the first evaluation reaching the target, so it is resolved
to ``--eval-every`` seconds.

Usage: python benchmarks/time_to_target.py [--presets neus instant-nsr lumisurf]
       [--datasets glossy_bunny dtu_scan24] [--minutes 5] [--eval-every 30] [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from lumisurf.bench.time_to_target import (
    CheckpointEvaluator,
    EvalSettings,
    MetricPanel,
    first_time,
    fmt_value,
    load_gt_mesh,
    plot_metric_grid,
    train_with_evals,
)
from lumisurf.config import apply_overrides
from lumisurf.data.load import load_config_scene
from lumisurf.kinds import build_trainer
from lumisurf.presets import preset_config
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
CSV_FIELDS = ("preset", "dataset", "train_seconds", "steps", "psnr", "chamfer", "eval_seconds")
BASELINE = "neus"  # --baseline changes it
BUILTIN = "builtin"


# ----------------------------------------------------------------------------- training


def make_trainer(preset: str, data_path: Path | None, scene, run_root: Path, args) -> Trainer:
    """The preset's trainer (neural field or sparse voxels); ``data_path`` None: the built-in scene."""
    data = [] if data_path is None else [f"data.path={data_path}"]
    cfg = apply_overrides(
        preset_config(preset),
        data + [f"train.device={args.device}", f"train.max_minutes={args.minutes}"] + list(args.set),
    )
    (run_root / "ckpt").mkdir(parents=True, exist_ok=True)
    return build_trainer(cfg, RunDir(run_root), scene=scene, progress=False)


def run_one(trainer: Trainer, preset: str, dataset: str, gt_mesh, args, on_row) -> list[dict]:
    """Train for ``args.minutes`` of training time, evaluating every ``args.eval_every`` s (clock paused)."""
    settings = EvalSettings(
        n_views=args.eval_views,
        downscale=2,
        mesh_resolution=args.mesh_resolution,
        chamfer_samples=args.chamfer_samples,
        extra_image_metrics=False,
    )
    evaluator = CheckpointEvaluator(trainer.scene, settings, gt_mesh=gt_mesh)

    def evaluate(t: Trainer) -> dict:
        return {"preset": preset, "dataset": dataset, **evaluator(t)}

    early = None if args.early_every is None else (args.early_every, args.early_until)
    rows = train_with_evals(trainer, args.minutes * 60.0, args.eval_every, evaluate, on_row, early=early)
    if evaluator.last_mesh is not None:
        evaluator.last_mesh.export(trainer.run.root / "mesh.ply")
    return rows


# ----------------------------------------------------------------------------- summary


def speedup(t_base: float | None, t: float | None, base_end: float) -> str:
    """'x.y' = t_base / t; a lower bound (base_end / t) when the baseline never got there; 'not reached'."""
    if t is None:
        return "not reached"
    if t_base is None:
        return f"> {base_end / t:.1f} ({BASELINE} not reached)"
    return f"{t_base / t:.1f}"


def summary_rows(results: dict, args) -> list[dict]:
    """One summary row per (dataset, preset): final values, time-to-target, speed-up vs the baseline."""
    out = []
    for (dataset, preset), rows in results.items():
        if not rows:
            continue
        final = rows[-1]
        has_gt = final["chamfer"] is not None
        t_c = first_time(rows, "chamfer", lambda v: v <= args.target_chamfer) if has_gt else None
        s = {
            "dataset": dataset,
            "preset": preset,
            "steps": final["steps"],
            "train_s": final["train_seconds"],
            "psnr": final["psnr"],
            "chamfer": final["chamfer"],
            "t_psnr": first_time(rows, "psnr", lambda v: v >= args.target_psnr),
            "t_chamfer": t_c,
        }
        base = results.get((dataset, BASELINE))
        if not has_gt:
            s["speedup"] = s["speedup_base_final"] = "n/a (no GT mesh)"
        elif not base:
            s["speedup"] = s["speedup_base_final"] = f"n/a ({BASELINE} not run)"
        else:
            base_end = base[-1]["train_seconds"]
            s["speedup"] = speedup(first_time(base, "chamfer", lambda v: v <= args.target_chamfer), t_c, base_end)
            # the Chamfer the baseline ended with: how much sooner does this preset get there?
            c_base = base[-1]["chamfer"]
            if c_base is None or not np.isfinite(c_base):
                s["speedup_base_final"] = f"n/a ({BASELINE} has no surface)"
            else:
                t_b = first_time(base, "chamfer", lambda v, c=c_base: v <= c)
                t_a = first_time(rows, "chamfer", lambda v, c=c_base: v <= c)
                s["speedup_base_final"] = speedup(t_b, t_a, base_end)
        out.append(s)
    return out


def markdown_summary(summary: list[dict], args) -> str:
    tc, tp = args.target_chamfer, args.target_psnr
    lines = [
        f"| dataset | preset | steps | train s | final PSNR | final Chamfer | s to PSNR {tp:g} | "
        f"s to Chamfer {tc:g} | speed-up vs {BASELINE} @ Chamfer {tc:g} | "
        f"speed-up vs {BASELINE} @ its final Chamfer |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['dataset']} | {s['preset']} | {s['steps']} | {s['train_s']:.0f} | "
            f"{fmt_value(s['psnr'], '.2f')} | {fmt_value(s['chamfer'], '.4f', 'n/a')} | "
            f"{fmt_value(s['t_psnr'], '.0f', 'not reached')} | "
            f"{fmt_value(s['t_chamfer'], '.0f', 'not reached' if s['chamfer'] is not None else 'n/a')} | "
            f"{s['speedup']} | {s['speedup_base_final']} |"
        )
    return "\n".join(lines)


def plot(results: dict, datasets: list[str], args, path: Path) -> None:
    """Metric vs training seconds, one line per preset; rows = datasets, columns = PSNR | Chamfer."""
    groups = {d: {p: rows for (ds, p), rows in results.items() if ds == d} for d in datasets}
    panels = [
        MetricPanel("psnr", "PSNR (dB)", args.target_psnr),
        MetricPanel("chamfer", "Chamfer (world units)", args.target_chamfer, log=True, empty_text="no GT mesh"),
    ]
    plot_metric_grid(
        groups, panels, path, f"time to target: {args.minutes * 60:.0f} s training budget per run", args.minutes * 60
    )


# ----------------------------------------------------------------------------- main


def resolve_dataset(name: str, data_root: Path) -> Path | None:
    """A dataset folder: ``name`` itself if it exists, else ``data_root / name``; None for ``builtin`` (the
    built-in synthetic scene)."""
    if name == BUILTIN:
        return None
    p = Path(name)
    path = p if p.is_dir() else data_root / name
    if not path.is_dir():
        raise SystemExit(f"dataset '{name}' not found (looked at {p} and {data_root / name})")
    return path.resolve()


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--presets",
        nargs="+",
        default=["neus", "instant-nsr", "lumisurf"],
        help="presets to compare (default: neus instant-nsr lumisurf; speed-ups are vs neus)",
    )
    ap.add_argument(
        "--datasets",
        nargs="+",
        default=["glossy_bunny", "dtu_scan24"],
        help="names under --data-root, dataset folders, or 'builtin' (the built-in synthetic scene; "
        "default: glossy_bunny dtu_scan24)",
    )
    ap.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA_ROOT,
        help="where dataset names are looked up (default: ../shared/data beside the repo root)",
    )
    ap.add_argument(
        "--minutes", type=float, default=None, help="training budget per run, minutes (default 5; 1/3 with --quick)"
    )
    ap.add_argument(
        "--eval-every",
        type=float,
        default=None,
        help="evaluate every this many seconds of training time (default 30; 10 with --quick)",
    )
    ap.add_argument(
        "--early-every",
        type=float,
        default=None,
        help="evaluate every this many seconds during the first --early-until seconds (default: off)",
    )
    ap.add_argument("--early-until", type=float, default=60.0, help="see --early-every (default 60)")
    ap.add_argument("--eval-views", type=int, default=4, help="test views for PSNR, at downscale 2 (default 4)")
    ap.add_argument("--mesh-resolution", type=int, default=128, help="marching-cubes grid (default 128)")
    ap.add_argument("--chamfer-samples", type=int, default=20_000, help="surface samples on each mesh (default 20000)")
    ap.add_argument("--target-chamfer", type=float, default=0.01, help="default 0.01 (world units)")
    ap.add_argument("--target-psnr", type=float, default=25.0, help="default 25 dB")
    ap.add_argument("--baseline", default=BASELINE, help=f"speed-ups are against this preset (default {BASELINE})")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides applied to every preset, e.g. train.batch_rays=256",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "benchmarks" / "results",
        help="output folder (default: benchmarks/results/ in the repo)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke check: 20 s budget, evaluation every 10 s")
    args = ap.parse_args(argv)
    if args.minutes is None:
        args.minutes = 20 / 60 if args.quick else 5.0
    if args.eval_every is None:
        args.eval_every = 10.0 if args.quick else 30.0
    return args


def main(argv=None) -> None:
    global BASELINE
    args = parse_args(argv)
    BASELINE = args.baseline
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "time_to_target.csv"
    results: dict[tuple[str, str], list[dict]] = {}
    names = []
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()

        def on_row(row: dict) -> None:
            writer.writerow(row)
            f.flush()
            print(
                f"  {row['dataset']:>14} {row['preset']:>12}  t={row['train_seconds']:7.1f}s "
                f"steps={row['steps']:6d}  psnr={row['psnr']:6.2f}  chamfer={fmt_value(row['chamfer'], '.5f', 'n/a')}"
                f"  (eval {row['eval_seconds']:.0f}s)",
                flush=True,
            )

        for dataset in args.datasets:
            path = resolve_dataset(dataset, args.data_root)
            name = BUILTIN if path is None else path.name
            names.append(name)
            data = [] if path is None else [f"data.path={path}"]
            data_cfg = apply_overrides(preset_config(args.presets[0]), data + args.set).data
            scene = load_config_scene(data_cfg)
            gt_mesh = load_gt_mesh(scene)
            for preset in args.presets:
                print(f"{name} / {preset}: training {args.minutes * 60:.0f} s", flush=True)
                trainer = make_trainer(preset, path, scene, args.out / "runs" / f"{name}-{preset}", args)
                results[(name, preset)] = run_one(trainer, preset, name, gt_mesh, args, on_row)
                del trainer
    summary = markdown_summary(summary_rows(results, args), args)
    (args.out / "time_to_target.md").write_text(summary + "\n")
    plot(results, names, args, args.out / "time_to_target.png")
    print(f"\n{summary}\n\nwrote {csv_path}, {args.out / 'time_to_target.md'}, {args.out / 'time_to_target.png'}")


if __name__ == "__main__":
    main()
