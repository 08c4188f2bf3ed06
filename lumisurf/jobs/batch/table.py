"""The batch's summary table: one row per scene of the spec (CSV with every value, Markdown for reading)."""

from __future__ import annotations

import csv
from pathlib import Path

from lumisurf.jobs.evaluate import METRIC_KEYS

FIXED = ("scene", "status", "this_run", "attempts", "resumed_from", "wall_s", "dataset", "preset")
SHOWN = (
    "psnr",
    "ssim",
    "lpips",
    "chamfer",
    "chamfer_visible",
    "normal_mae_deg",
    "mask_iou",
    "steps",
    "train_seconds",
    "albedo_psnr",
    "roughness_mae",
    "metallic_mae",
    "relight_psnr",
    "matid_iou",
)
FORMATS = {
    "psnr": ".2f",
    "ssim": ".3f",
    "lpips": ".3f",
    "chamfer": ".4f",
    "chamfer_visible": ".4f",
    "normal_mae_deg": ".1f",
    "mask_iou": ".3f",
    "steps": "d",
    "train_seconds": ".0f",
    "wall_s": ".0f",
    "albedo_psnr": ".2f",
    "roughness_mae": ".3f",
    "metallic_mae": ".3f",
    "relight_psnr": ".2f",
    "matid_iou": ".3f",
}


def summary_row(plan, state: dict, ran: bool) -> dict:
    """A scene's row from its ``status.json``: ``status`` is ``ok``, ``failed: <reason>`` or ``not run``."""
    metrics = state.get("metrics") or {}
    if state.get("status") == "failed":
        shown = f"failed: {state.get('error') or '?'}"
    else:
        shown = state.get("status") if state.get("status") in ("ok", "running") else "not run"
    row = {
        "scene": plan.name,
        "status": shown,
        "this_run": "ran" if ran else "skipped (finished before)",
        "attempts": state.get("attempts"),
        "resumed_from": " ".join(str(s) for s in state.get("resumed_from") or []),
        "wall_s": state.get("wall_s"),
        "dataset": plan.data or "<built-in>",
        "preset": plan.pipeline.preset,
    }
    row.update({k: metrics.get(k) for k in METRIC_KEYS})
    return row


def write_tables(root: Path, rows: list[dict], title: str) -> str:
    """``summary.csv`` (every column) and ``summary.md`` (the columns some scene has); returns the Markdown."""
    columns = list(FIXED) + [k for k in METRIC_KEYS if k not in FIXED]
    with open(root / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: "" if r.get(k) is None else r[k] for k in columns} for r in rows)
    shown = ["scene", "status", "this_run", "attempts", "resumed_from", "wall_s"]
    shown += [k for k in SHOWN if any(r.get(k) is not None for r in rows)]
    lines = [f"# {title}", "", "| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k), k) for k in shown) + " |")
    md = "\n".join(lines)
    (root / "summary.md").write_text(md + "\n")
    return md


def _cell(value, key: str) -> str:
    if value is None or value == "":
        return "" if key == "resumed_from" else "n/a"
    if isinstance(value, (int, float)) and key in FORMATS:
        return format(int(value) if FORMATS[key] == "d" else float(value), FORMATS[key])
    return str(value).replace("|", "/").replace("\n", " ")
