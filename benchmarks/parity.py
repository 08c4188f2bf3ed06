"""Same seeds, same metrics: a fingerprint of what the training and evaluation jobs compute.

Runs ``lumisurf train`` on the built-in scene with a fixed seed and ``--max-steps`` (the default preset,
``nero`` followed by 30 steps of Stage II, ``svraster-sdf``), and a 2-step smoke of every preset, then prints
and writes every run's metrics (``metrics.json`` plus the last row of ``scalars.csv``, Stage II's
``summary.json``) to one JSON file. Two such files (before / after a refactor) are compared with
``--compare A.json B.json``: each number is reported as identical, within 1e-4 relative, or different.
``--code DIR`` runs another checkout's lumisurf (the code before a refactor) with this script.

    python benchmarks/parity.py --out /tmp/before.json
    python benchmarks/parity.py --compare /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _metrics(run: Path) -> dict:
    out = {}
    if (run / "metrics.json").exists():
        out.update(
            {
                f"eval.{k}": v
                for k, v in json.loads((run / "metrics.json").read_text()).items()
                if isinstance(v, (int, float)) and "seconds" not in k
            }
        )
    if (run / "scalars.csv").exists():
        with open(run / "scalars.csv") as f:
            rows = list(csv.DictReader(f))
        if rows:
            out.update(
                {
                    f"last.{k}": float(v)
                    for k, v in rows[-1].items()
                    if v not in ("", None) and "time" not in k and "seconds" not in k and "rate" not in k
                }
            )
    return out


def _stage2(run: Path, code: Path, steps: int) -> dict:
    """``lumisurf material RUN`` (no export) and its summary's numbers as ``material.<key>``."""
    cmd = [sys.executable, "-m", "lumisurf.cli", "material", str(run), "--steps", str(steps), "--no-progress"]
    cmd += ["--no-export", "--device", "cpu"]
    done = subprocess.run(cmd, cwd=code, capture_output=True, text=True)
    out = {"material.rc": done.returncode}
    summary = run / "material" / "summary.json"
    if summary.exists():
        out.update(
            {
                f"material.{k}": v
                for k, v in json.loads(summary.read_text()).items()
                if isinstance(v, (int, float)) and "seconds" not in k
            }
        )
    return out


def run_all(steps: int, presets: list[str], code: Path = ROOT, stage2_steps: int = 30) -> dict:
    """The default preset, ``nero`` (then Stage II) and ``svraster-sdf`` for ``steps``, every preset for 2;
    ``code``: the checkout whose ``lumisurf`` runs (its own folder first on sys.path)."""
    longer = [("default", "lumisurf", steps), ("nero", "nero", steps), ("svraster-sdf", "svraster-sdf", steps)]
    jobs = longer + [(f"smoke-{p}", p, 2) for p in presets]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset, n in jobs:
            run = Path(tmp) / name
            cmd = [
                sys.executable,
                "-m",
                "lumisurf.cli",
                "train",
                "--preset",
                preset,
                "--seed",
                "0",
                "--max-steps",
                str(n),
                "--out",
                str(run),
                "--no-progress",
                "--device",
                "cpu",
            ]
            done = subprocess.run(cmd, cwd=code, capture_output=True, text=True)
            results[name] = {"rc": done.returncode, **_metrics(run)}
            if name == "nero":
                results[name].update(_stage2(run, code, stage2_steps))
            print(name, json.dumps(results[name]), flush=True)
    return results


def compare(a: dict, b: dict) -> int:
    worst = 0
    for run in sorted(set(a) | set(b)):
        for key in sorted(set(a.get(run, {})) | set(b.get(run, {}))):
            x, y = a.get(run, {}).get(key), b.get(run, {}).get(key)
            if x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)):
                verdict = "identical"
            elif (
                isinstance(x, (int, float)) and isinstance(y, (int, float)) and abs(x - y) <= 1e-4 * max(abs(x), abs(y))
            ):
                verdict, worst = "within 1e-4", max(worst, 1)
            else:
                verdict, worst = "DIFFERENT", 2
            print(f"{run:24s} {key:32s} {x!s:>22} {y!s:>22}  {verdict}")
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="where to write the fingerprint JSON")
    ap.add_argument("--steps", type=int, default=40, help="steps of the default-preset run")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--code", type=Path, default=ROOT, help="run the lumisurf of this checkout (default: this one)")
    args = ap.parse_args(argv)
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        return 1 if compare(a, b) == 2 else 0
    from lumisurf.presets import PRESETS

    results = run_all(args.steps, sorted(PRESETS), args.code.resolve())
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
