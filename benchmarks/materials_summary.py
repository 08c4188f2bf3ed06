#!/usr/bin/env python
"""One table of every Stage II variant measured under a runs root, with medians and worst cases.

    python benchmarks/materials_summary.py /work/runs/mat35 --name materials35_summary [--rescore]

Reads ``RUNS_ROOT/<scene>-<preset><tag>-s<seed>/stage2/<variant>/row.json`` (written by ``materials.py``), names
each scene's GT materials from its dataset's ``meta.json``, and per variant gives the median and the worst over
its rows, and the same figures for ``default`` on the same Stage I runs (paired). GT-dielectric metallic MAE is
the metallic MAE over pixels of GT materials with metallic 0 (``metallic_mae_id<k>``; the whole object for
one-material scenes). ``--rescore`` recomputes the relight figures from the saved PNGs with today's
``relight_view_scores`` (rows measured before the clipped alignment). Writes ``results/<name>.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from lumisurf.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# (column, row key, higher is better)
COLUMNS = [
    ("relight raw", "relight_psnr", True),
    ("relight aligned", "relight_psnr_scaled", True),
    ("albedo aligned", "albedo_psnr_aligned", True),
    ("roughness MAE", "roughness_mae", False),
    ("metallic MAE", "metallic_mae", False),
    ("GT-dielectric metallic MAE", "dielectric_metallic_mae", False),
]


def gt_materials(cfg) -> list[dict]:
    """The ``materials`` list of the run's dataset's meta.json ([] when the dataset does not say)."""
    meta = Path(cfg.data.path) / "meta.json"
    return json.loads(meta.read_text()).get("materials", []) if meta.exists() else []


def describe(materials: list[dict]) -> str:
    return " + ".join(f"{'metal' if m['metallic'] >= 0.5 else 'dielectric'} r{m['roughness']:.2f}" for m in materials)


def dielectric_metallic_mae(row: dict, materials: list[dict]) -> float | None:
    """Mean metallic MAE over the GT-dielectric materials of the scene (None without dielectrics)."""
    diel = [m["id"] for m in materials if m["metallic"] < 0.5]
    if not diel:
        return None
    if len(materials) == 1:
        return row.get("metallic_mae")
    vals = [row[f"metallic_mae_id{k}"] for k in diel if f"metallic_mae_id{k}" in row]
    return sum(vals) / len(vals) if vals else None


def stage1_tag(run: Path, cfg) -> str:
    """`` [octave]`` for a Stage I run ``<scene>-<preset>-octave-s<seed>`` trained with ``--stage1-tag``: a
    variant on another Stage I is a row group of its own ("" for the plain preset)."""
    middle = run.name[len(Path(cfg.data.path).name) + 1 : run.name.rindex("-s")]  # <preset><tag>
    tag = middle[len(cfg.preset) :].lstrip("-") if middle.startswith(str(cfg.preset)) else middle
    return f" [{tag}]" if tag else ""


def collect(root: Path, rescore: bool) -> list[dict]:
    rows = []
    for row_file in sorted(root.glob("*/stage2/*/row.json")):
        variant_dir = row_file.parent
        run = variant_dir.parent.parent
        row = json.loads(row_file.read_text())
        if rescore:
            from relight_rescore import rescore as rescore_run  # benchmarks/ sibling; imports lumisurf

            row.update({k: v for k, v in rescore_run(variant_dir).items() if k.startswith("relight_")})
        cfg = load_config(run / "config.yaml")
        mats = gt_materials(cfg)
        row["dielectric_metallic_mae"] = dielectric_metallic_mae(row, mats)
        name = variant_dir.name + stage1_tag(run, cfg)
        rows.append({"stage1": run.name, "variant": name, "gt": describe(mats), **row})
    return rows


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) and abs(v) < 1 else f"{v:.2f}"


def stats(rows: list[dict], key: str, higher: bool) -> str:
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return "-"
    return f"{fmt(statistics.median(vals))} / {fmt(min(vals) if higher else max(vals))}"


def table(rows: list[dict]) -> list[str]:
    head = ["Stage I run", "GT", "variant", *[c for c, _, _ in COLUMNS], "Stage II steps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["stage1"], r["gt"], r["variant"], *[fmt(r.get(k)) for _, k, _ in COLUMNS], str(r.get("steps"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary(rows: list[dict]) -> list[str]:
    head = ["variant", "runs", *[f"{c} median / worst" for c, _, _ in COLUMNS], "default on the same runs: aligned"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    default = {r["stage1"]: r for r in rows if r["variant"] == "default"}
    for v in sorted({r["variant"] for r in rows}, key=lambda v: (v != "default", v)):
        mine = [r for r in rows if r["variant"] == v]
        paired = [default[r["stage1"]] for r in mine if r["stage1"] in default]
        cells = [v, str(len(mine)), *[stats(mine, k, hi) for _, k, hi in COLUMNS]]
        cells.append(stats(paired, "relight_psnr_scaled", True) + f" ({len(paired)} runs)")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="runs root of benchmarks/materials.py (--runs-root)")
    p.add_argument("--name", default="materials_summary")
    p.add_argument("--rescore", action="store_true", help="relight figures again from the saved PNGs")
    args = p.parse_args(argv)
    rows = collect(args.root, args.rescore)
    if not rows:
        raise SystemExit(f"materials_summary: no stage2/*/row.json under {args.root}")
    lines = [
        f"# Stage II variants under `{args.root}`",
        "",
        "Every row.json found (`benchmarks/materials.py`); median / worst over the rows of each variant",
        "(worst = lowest PSNR, highest MAE). Relight in dB (sRGB, all relight views), MAEs on [0, 1].",
        "",
        *summary(rows),
        "",
        *table(rows),
    ]
    out = ROOT / "benchmarks" / "results" / f"{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
