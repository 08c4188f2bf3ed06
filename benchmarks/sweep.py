#!/usr/bin/env python
"""Robustness sweep: scenes nobody tuned for x seeds x presets, each train -> extract -> eval in its own
process, one at a time; a table of every run and a summary (median, worst, spread, crashes).

    python benchmarks/sweep.py --suite glossy --count 8 --seeds 0 1 2                    # 24 runs x 5 min
    python benchmarks/sweep.py --suite two_material --count 6 --seeds 0 1 --presets lumisurf-seg nero
    python benchmarks/sweep.py --public glossy_bunny --seeds 0 1 2 --name bunny3           # ../shared/data
    python benchmarks/sweep.py --suite glossy --count 2 --seeds 0 --minutes 1 --res 100    # a quick look

Generated scenes (``benchmarks/scenes/make_scene.py``, Mitsuba 3) are rendered on first use into
``--scenes-root`` (kept out of git; the same seed always gives the same scene). Runs go to
``--runs-root/<name>/<scene>-<preset>-s<seed>``; a run whose ``row.json`` exists is read, not redone, so an
interrupted sweep continues. Written: ``benchmarks/results/sweep_<name>.csv`` (one row per run) and
``sweep_<name>.md`` (the rows and the summary). Per run: steps, train seconds, PSNR, Chamfer, normal MAE,
material-id IoU, status (ok / crashed / diverged), divergence recoveries, NaN metrics, the 1-min load
average when it started (a busy machine makes fewer steps).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FIELDS = [
    "scene",
    "preset",
    "seed",
    "status",
    "recoveries",
    "nan",
    "steps",
    "train_seconds",
    "psnr",
    "chamfer",
    "chamfer_visible",
    "normal_mae_deg",
    "matid_iou",
    "load_avg",
    "wall_seconds",
    "error",
]


def scene_list(args) -> list[Path]:
    scenes = [SHARED / name if not Path(name).is_dir() else Path(name) for name in args.public]
    if args.suite:
        sys.path.insert(0, str(ROOT / "benchmarks" / "scenes"))
        from make_scene import make_suite

        scenes += make_suite(
            args.suite,
            args.count,
            args.scenes_root,
            base_seed=args.base_seed,
            res=args.res,
            spp=args.spp,
            progress=False,
        )
    missing = [s for s in scenes if not s.is_dir()]
    if missing:
        raise SystemExit(f"sweep: no dataset at {', '.join(map(str, missing))}")
    return scenes


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lumisurf.cli", *args]


def budget_args(minutes: float, steps: int | None) -> list[str]:
    """The training budget: a fixed step count (A/B comparisons that a busy machine cannot skew) or minutes."""
    return ["--max-steps", str(steps)] if steps else ["--max-minutes", str(minutes)]


def code_env(code: Path | None) -> dict | None:
    """The environment that runs the lumisurf of checkout ``code`` (an older commit, for before/after tables) in
    the CLI's subprocesses; None: this checkout."""
    if code is None:
        return None
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(code).resolve()), os.environ.get("PYTHONPATH", "")])}


def _run(cmd: list[str], code: Path | None) -> subprocess.CompletedProcess:
    """Run a CLI command with the lumisurf of ``code`` (None: this checkout). ``python -m`` puts its working
    folder first on sys.path, so an older checkout runs from its own folder (paths are passed absolute)."""
    cwd = Path(code).resolve() if code is not None else ROOT
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=code_env(code))


def run_one(
    scene: Path, preset: str, seed: int, budget: list[str], out: Path, overrides: list[str], code: Path | None = None
) -> dict:
    """Train, extract, evaluate one run (``code``: an older checkout's lumisurf, see :func:`_run`); never raises
    for a failing run (it becomes the row's status)."""
    scene, out = Path(scene).resolve(), Path(out).resolve()
    row = {"scene": scene.name, "preset": preset, "seed": seed, "load_avg": round(os.getloadavg()[0], 2)}
    t0 = time.perf_counter()
    train = _run(
        _cli(
            "train",
            "--data",
            str(scene),
            "--preset",
            preset,
            "--seed",
            str(seed),
            *budget,
            "--out",
            str(out),
            "--force",
            "--no-progress",
            "train.finalize=false",
            *overrides,
        ),
        code,
    )
    log = train.stdout + train.stderr
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.log").write_text(log)
    row["recoveries"] = log.count("recovered from divergence")
    row["status"] = "ok" if train.returncode == 0 else ("diverged" if "diverged" in log else "crashed")
    if train.returncode != 0:
        row["error"] = (train.stderr.strip().splitlines() or ["?"])[-1][:300]
    summary = next((json.loads(line) for line in reversed(train.stdout.splitlines()) if line.startswith("{")), {})
    row.update(steps=summary.get("steps"), train_seconds=summary.get("train_seconds"))
    measure(out, row, code=code)
    row["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return row


def measure(out: Path, row: dict, mesh_only: bool = False, code: Path | None = None, extract: bool = True) -> dict:
    """Extract and evaluate the run in ``out`` and put its metrics in ``row`` (status, error, steps, psnr, ...);
    ``mesh_only`` keeps the image metrics already in its metrics.json (a new extraction, same renders);
    ``extract=False`` measures the mesh.ply already there (a new mesh metric, the same meshes)."""
    if (out / "ckpt" / "last.pt").exists():  # a diverged run still leaves its healthy checkpoint: measure it
        run = str(Path(out).resolve())
        evaluate = _cli("eval", run, "--force", *(["--mesh-only"] if mesh_only else []))
        for cmd in ((_cli("extract", run, "--force"),) if extract else ()) + (evaluate,):
            done = _run(cmd, code)
            if done.returncode != 0:
                row["status"] = "crashed" if row["status"] == "ok" else row["status"]
                row["error"] = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
                break
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    if row["steps"] is None:
        row["steps"] = _steps_from_checkpoint(out)
    for key in ("psnr", "chamfer", "chamfer_visible", "normal_mae_deg", "matid_iou"):
        row[key] = metrics.get(key)
    row["nan"] = any(
        isinstance(metrics.get(k), float) and not math.isfinite(metrics[k])
        for k in ("psnr", "chamfer", "normal_mae_deg")
    )
    return row


def _steps_from_checkpoint(run: Path):
    try:
        import torch

        return int(torch.load(run / "ckpt" / "last.pt", map_location="cpu", weights_only=True)["step"])
    except Exception:
        return None


def fmt(v, spec=".4f") -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN"
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def rows_table(rows: list[dict]) -> str:
    cols = [
        ("scene", "s"),
        ("preset", "s"),
        ("seed", "d"),
        ("status", "s"),
        ("recoveries", "d"),
        ("steps", "d"),
        ("psnr", ".2f"),
        ("chamfer", ".4f"),
        ("chamfer_visible", ".4f"),
        ("normal_mae_deg", ".1f"),
        ("matid_iou", ".3f"),
        ("load_avg", ".2f"),
    ]
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c), f) for c, f in cols) + " |")
    return "\n".join(lines)


def _spread(rows: list[dict], key: str) -> float | None:
    """Worst per-scene max/min of ``key`` over seeds (scenes with >= 2 finite values)."""
    ratios = []
    for scene in {r["scene"] for r in rows}:
        vals = [r[key] for r in rows if r["scene"] == scene and _finite(r.get(key))]
        if len(vals) >= 2 and min(vals) > 0:
            ratios.append(max(vals) / min(vals))
    return max(ratios) if ratios else None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summary_table(rows: list[dict]) -> str:
    head = [
        "preset",
        "runs",
        "crashed",
        "diverged",
        "recovered",
        "NaN",
        "steps median (min)",
        "PSNR median",
        "Chamfer median",
        "Chamfer worst",
        "Chamfer max/min per scene (worst)",
        "visible Chamfer median (NeRO's metric)",
        "visible Chamfer worst",
        "normal MAE median",
        "matid IoU median",
        "matid IoU worst",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for preset in dict.fromkeys(r["preset"] for r in rows):
        rs = [r for r in rows if r["preset"] == preset]
        col = {
            k: [r[k] for r in rs if _finite(r.get(k))]
            for k in ("steps", "psnr", "chamfer", "chamfer_visible", "normal_mae_deg", "matid_iou")
        }
        med = {k: statistics.median(v) if v else None for k, v in col.items()}
        lines.append(
            "| "
            + " | ".join(
                [
                    preset,
                    str(len(rs)),
                    str(sum(r["status"] == "crashed" for r in rs)),
                    str(sum(r["status"] == "diverged" for r in rs)),
                    str(sum((r.get("recoveries") or 0) > 0 for r in rs)),
                    str(sum(bool(r.get("nan")) for r in rs)),
                    f"{fmt(med['steps'], '.0f')} ({fmt(min(col['steps']) if col['steps'] else None, 'd')})",
                    fmt(med["psnr"], ".2f"),
                    fmt(med["chamfer"]),
                    fmt(max(col["chamfer"]) if col["chamfer"] else None),
                    fmt(_spread(rs, "chamfer"), ".2f"),
                    fmt(med["chamfer_visible"]),
                    fmt(max(col["chamfer_visible"]) if col["chamfer_visible"] else None),
                    fmt(med["normal_mae_deg"], ".1f"),
                    fmt(med["matid_iou"], ".3f"),
                    fmt(min(col["matid_iou"]) if col["matid_iou"] else None, ".3f"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def write_results(rows: list[dict], name: str, args) -> Path:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"sweep_{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    cmd = " ".join(["python benchmarks/sweep.py", *sys.argv[1:]])
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes} min"
    md = (
        f"# Sweep `{name}`\n\n`{cmd}` — {budget} of training per run, one run at a time on "
        f"{os.cpu_count()} CPU cores.\n\n## Summary\n\n{summary_table(rows)}\n\n## Every run\n\n"
        f"{rows_table(rows)}\n"
    )
    (out / f"sweep_{name}.md").write_text(md)
    return out / f"sweep_{name}.md"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=["glossy", "two_material"], help="generated scenes of this kind")
    ap.add_argument("--count", type=int, default=8, help="generated scenes in the suite")
    ap.add_argument("--base-seed", type=int, default=0, help="scene k of the suite has seed base-seed + k")
    ap.add_argument("--public", nargs="*", default=[], help="datasets under ../shared/data (or folders)")
    ap.add_argument("--presets", nargs="+", default=["lumisurf"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per run")
    ap.add_argument("--steps", type=int, help="train a fixed number of steps instead of --minutes (A/B tests)")
    ap.add_argument("--res", type=int, default=200, help="generated scenes' resolution")
    ap.add_argument("--spp", type=int, default=64, help="generated scenes' samples per pixel")
    ap.add_argument("--scenes-root", type=Path, default=ROOT / "benchmarks" / "scenes" / "generated")
    ap.add_argument("--runs-root", type=Path, default=ROOT / "runs" / "sweep")
    ap.add_argument("--name", help="results name (default: the suite or the public scenes)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    ap.add_argument(
        "--code",
        type=Path,
        default=None,
        help="run the lumisurf of this checkout (e.g. a git worktree of an older commit) instead of this "
        "one: the 'before' side of a before/after table",
    )
    ap.add_argument(
        "--remeasure",
        action="store_true",
        help="runs already done: recompute the mesh metrics of the mesh.ply they have (after a new mesh metric)",
    )
    ap.add_argument(
        "--reeval",
        action="store_true",
        help="runs already done: extract their checkpoints again and recompute the mesh metrics "
        "(after a change to extraction), keep their training and image metrics",
    )
    args = ap.parse_args(argv)
    if not args.suite and not args.public:
        ap.error("give --suite and/or --public")
    name = args.name or args.suite or "_".join(Path(p).name for p in args.public)
    rows = []
    for scene in scene_list(args):
        for preset in args.presets:
            for seed in args.seeds:
                out = args.runs_root / name / f"{scene.name}-{preset}-s{seed}"
                cached = out / "row.json"
                if cached.exists():
                    row = json.loads(cached.read_text())
                    if args.remeasure and row.get("status") != "crashed":
                        print(f"$ {scene.name} {preset} seed {seed}: mesh metrics again", flush=True)
                        cached.write_text(json.dumps(measure(out, row, mesh_only=True, code=args.code, extract=False)))
                    elif args.reeval and row.get("status") != "crashed":
                        print(f"$ {scene.name} {preset} seed {seed}: extract + eval again", flush=True)
                        cached.write_text(json.dumps(measure(out, row, mesh_only=True, code=args.code)))
                else:
                    budget = budget_args(args.minutes, args.steps)
                    print(f"$ {scene.name} {preset} seed {seed} ({' '.join(budget)})", flush=True)
                    row = run_one(scene, preset, seed, budget, out, args.set, code=args.code)
                    cached.write_text(json.dumps(row))
                print("  " + ", ".join(f"{k}={fmt(row.get(k), '.4g')}" for k in FIELDS[3:13]), flush=True)
                rows.append(row)
                write_results(rows, name, args)
    path = write_results(rows, name, args)
    print(summary_table(rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
