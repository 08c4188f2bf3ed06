"""Material segmentation benchmark: `lumisurf-seg` against the same run without segmentation (`nero`).

For every preset x seed: ``lumisurf train --max-minutes M``, ``lumisurf extract``, ``lumisurf eval`` (each in
its own process, one at a time), then one Markdown table of the test-split metrics (PSNR, Chamfer, normal
MAE, material-id IoU per GT material) with the mean over seeds per preset. Run folders are
``OUT/<scene>-<preset>-s<seed>``; with ``--reuse`` a folder that already has ``metrics.json`` is only read.

    python benchmarks/segmentation.py                              # two_materials, 3 seeds, 5 min each (~45 min)
    python benchmarks/segmentation.py --seeds 0 --minutes 1        # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [
    ("steps", "steps", "d"),
    ("psnr", "PSNR", ".2f"),
    ("chamfer", "Chamfer", ".4f"),
    ("normal_mae_deg", "normal MAE (deg)", ".1f"),
    ("matid_iou", "matid IoU", ".3f"),
]


def run_one(data: Path, preset: str, seed: int, minutes: float, out: Path, reuse: bool) -> dict:
    if reuse and (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    cli = [sys.executable, "-m", "lumisurf.cli"]
    steps = [
        [
            *cli,
            "train",
            "--data",
            str(data),
            "--preset",
            preset,
            "--seed",
            str(seed),
            "--max-minutes",
            str(minutes),
            "--out",
            str(out),
            "--force",
            "--no-progress",
        ],
        [*cli, "extract", str(out)],
        [*cli, "eval", str(out), "--force"],
    ]
    for cmd in steps:
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def cell(value, fmt: str) -> str:
    if value is None:
        return "—"
    return format(value, fmt) if fmt != "d" else str(int(round(value)))


def table(results: dict[tuple[str, int], dict]) -> str:
    header = ["preset", "seed"] + [c[1] for c in COLUMNS] + ["IoU per material"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for preset in dict.fromkeys(p for p, _ in results):  # in the order given
        rows = [(s, m) for (p, s), m in sorted(results.items()) if p == preset]
        for seed, m in rows:
            per = m.get("matid_iou_per_class") or {}
            lines.append(
                "| "
                + " | ".join(
                    [preset, str(seed)]
                    + [cell(m.get(k), f) for k, _, f in COLUMNS]
                    + [" / ".join(f"{v:.3f}" for v in per.values()) or "—"]
                )
                + " |"
            )
        means = []
        for key, _, fmt in COLUMNS:
            vals = [m[key] for _, m in rows if m.get(key) is not None]
            means.append(f"**{cell(statistics.mean(vals), fmt)}**" if vals else "—")
        lines.append("| " + " | ".join([f"**{preset}**", "mean"] + means + [""]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "two_materials")
    ap.add_argument("--presets", nargs="+", default=["lumisurf-seg", "nero"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_segmentation")
    ap.add_argument("--reuse", action="store_true", help="read runs that already have metrics.json")
    ap.add_argument("--md", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"no dataset at {args.data}", file=sys.stderr)
        return 2
    results = {}
    for preset in args.presets:
        for seed in args.seeds:
            out = args.out / f"{args.data.name}-{preset}-s{seed}"
            results[(preset, seed)] = run_one(args.data, preset, seed, args.minutes, out, args.reuse)
    text = table(results)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
