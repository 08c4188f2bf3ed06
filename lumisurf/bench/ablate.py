"""``lumisurf bench ablate SPEC.yaml``: A/B variants of a preset under the same training budget.

Every variant (a preset plus ``dotted.key=value`` overrides, see :mod:`lumisurf.bench.spec`) is
validated first — every variant's config is built before anything trains — then trained in its own
process (``python -m lumisurf.bench.variant``) so its peak memory is its own, for the same budget of
training time, with the clock paused every ``eval_every`` seconds for an evaluation
(:mod:`lumisurf.bench.time_to_target`). Written to ``--out``:

* ``ablation.csv`` — every evaluation row of every variant;
* ``ablation.md`` — the summary table (also printed): final PSNR / SSIM / Chamfer / normal MAE,
  seconds to the targets, steps, peak memory;
* ``ablation.png`` — PSNR (and Chamfer when the dataset has a GT mesh) vs training seconds;
* ``variants/<name>/`` — job.json, config.yaml, normalization.json, rows.csv, result.json, mesh.ply.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from lumisurf.bench.spec import AblationSpec, VariantSpec, build_configs, load_spec, select
from lumisurf.bench.time_to_target import EvalSettings, MetricPanel, first_time, fmt_value, plot_metric_grid
from lumisurf.bench.variant import ROW_FIELDS
from lumisurf.config import Config, to_dict
from lumisurf.errors import LumisurfError
from lumisurf.jobs.spec_paths import REPO_ROOT

OUTPUTS = ("ablation.csv", "ablation.md", "ablation.png")
INT_FIELDS = ("steps",)
TEXT_FIELDS = ("variant", "preset", "dataset")


@dataclass
class Outcome:
    """What one variant's process left: its evaluation rows and its result record."""

    variant: VariantSpec
    rows: list[dict]
    result: dict

    @property
    def ok(self) -> bool:
        return self.result.get("status") == "ok"


# ----------------------------------------------------------------------------- folders and jobs


def default_out(spec: AblationSpec) -> Path:
    """``benchmarks/results/ablate_<spec name>/`` in the repository (in the working folder otherwise)."""
    base = REPO_ROOT / "benchmarks" if (REPO_ROOT / "benchmarks").is_dir() else Path("benchmarks")
    return base / "results" / f"ablate_{spec.name}"


def prepare_out(out: Path, names: list[str], force: bool) -> None:
    """Refuse to replace earlier outputs without ``force``; with it, clear the variants about to run."""
    existing = [out / f for f in OUTPUTS if (out / f).exists()]
    existing += [out / "variants" / n for n in names if (out / "variants" / n).exists()]
    if existing and not force:
        raise LumisurfError(
            f"{out} already holds ablation results ({existing[0].name}, ...); pass --force "
            f"to overwrite them or choose another --out"
        )
    for n in names:
        if (out / "variants" / n).is_dir():
            shutil.rmtree(out / "variants" / n)
    (out / "variants").mkdir(parents=True, exist_ok=True)


def eval_settings(spec: AblationSpec) -> EvalSettings:
    return EvalSettings(
        n_views=spec.eval_views,
        downscale=spec.eval_downscale,
        mesh_resolution=spec.mesh_resolution,
        chamfer_samples=spec.chamfer_samples,
    )


def write_job(root: Path, spec: AblationSpec, variant: VariantSpec, cfg: Config, progress: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    job = {
        "variant": variant.name,
        "dataset": dataset_label(spec),
        "config": to_dict(cfg),
        "eval": asdict(eval_settings(spec)),
        "budget_seconds": spec.minutes * 60.0,
        "eval_every": spec.eval_every,
        "progress": progress,
    }
    path = root / "job.json"
    path.write_text(json.dumps(job, indent=2))
    return path


def run_child(job: Path) -> int:
    """Run one variant in a fresh Python process (this package first on its path); returns its exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "lumisurf.bench.variant", str(job)], env=env).returncode


def read_rows(path: Path) -> list[dict]:
    """Rows of a variant's CSV with numbers parsed back ('' -> None, 'nan' -> nan)."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                if k in TEXT_FIELDS:
                    row[k] = v
                elif v == "":
                    row[k] = None
                else:
                    row[k] = int(v) if k in INT_FIELDS else float(v)
            rows.append(row)
    return rows


def run_variant(out: Path, spec: AblationSpec, variant: VariantSpec, cfg: Config, progress: bool) -> Outcome:
    root = out / "variants" / variant.name
    code = run_child(write_job(root, spec, variant, cfg, progress))
    return load_outcome(root, variant, code)


def load_outcome(root: Path, variant: VariantSpec, code: int = 0) -> Outcome:
    """The outcome a variant's folder holds (``code``: its process's exit code)."""
    result_path = root / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if code != 0 or result.get("status") != "ok":
        result = {
            **result,
            "status": "failed",
            "error": result.get("error", f"the variant process exited with code {code}"),
        }
    return Outcome(variant, read_rows(root / "rows.csv"), result)


# ----------------------------------------------------------------------------- summary


def dataset_label(spec: AblationSpec) -> str:
    return Path(spec.dataset).name if spec.dataset else "synthetic"


def summarize(spec: AblationSpec, outcomes: list[Outcome]) -> list[dict]:
    """One summary row per variant: final metrics, time to the targets, steps, peak memory."""
    base = next((o.rows[-1]["psnr"] for o in outcomes if o.rows and o.rows[-1]["psnr"] is not None), None)
    out = []
    for o in outcomes:
        last = o.rows[-1] if o.rows else {}
        s = {
            "variant": o.variant.name,
            "preset": o.variant.preset,
            "overrides": " ".join(o.variant.overrides),
            "status": "ok" if o.ok else f"failed: {o.result.get('error', '?')}",
            "steps": o.result.get("steps", last.get("steps")),
            "train_s": last.get("train_seconds"),
            "psnr": last.get("psnr"),
            "ssim": last.get("ssim"),
            "chamfer": last.get("chamfer"),
            "normal_mae_deg": last.get("normal_mae_deg"),
            "t_psnr": first_time(o.rows, "psnr", lambda v: v >= spec.target_psnr),
            "t_chamfer": None
            if spec.target_chamfer is None
            else first_time(o.rows, "chamfer", lambda v: v <= spec.target_chamfer),
            "peak_rss_mib": o.result.get("peak_rss_mib", last.get("peak_rss_mib")),
            "peak_cuda_mib": o.result.get("peak_cuda_mib", last.get("peak_cuda_mib")),
        }
        s["d_psnr"] = None if s["psnr"] is None or base is None else s["psnr"] - base
        out.append(s)
    return out


def _reached(t: float | None, rows_seen: bool) -> str:
    return fmt_value(t, ".0f", "not reached" if rows_seen else "-")


def markdown(spec: AblationSpec, summary: list[dict]) -> str:
    """The summary table with a short header naming the dataset, budget and evaluation."""
    tc, cuda = spec.target_chamfer, any(s["peak_cuda_mib"] is not None for s in summary)
    head = [
        "variant",
        "preset",
        "overrides",
        "steps",
        "train s",
        "PSNR",
        f"Δ PSNR vs {summary[0]['variant']}",
        "SSIM",
        "normal MAE (deg)",
        "Chamfer",
        f"s to PSNR {spec.target_psnr:g}",
    ]
    head += [f"s to Chamfer {tc:g}"] if tc is not None else []
    head += ["peak RSS MiB"] + (["peak CUDA MiB"] if cuda else []) + ["status"]
    lines = [
        f"# Ablation `{spec.name}`",
        "",
        f"Dataset `{dataset_label(spec)}` ({spec.dataset or 'built-in synthetic scene'}); "
        f"{spec.minutes * 60:.0f} s of training per variant, evaluated every {spec.eval_every:g} s "
        f"(clock paused) on {spec.eval_views} test views at 1/{spec.eval_downscale} resolution; "
        f"Chamfer in world units (marching cubes {spec.mesh_resolution}^3); seed {spec.seed}. Peak RSS is the "
        f"high-water mark of the variant's own process (Python and torch included).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < 3 or h == "status" else "---:" for i, h in enumerate(head)) + "|",
    ]
    for s in summary:
        seen = s["train_s"] is not None
        cells = [
            s["variant"],
            s["preset"],
            f"`{s['overrides']}`" if s["overrides"] else "",
            fmt_value(s["steps"], "d"),
            fmt_value(s["train_s"], ".0f"),
            fmt_value(s["psnr"], ".2f"),
            fmt_value(s["d_psnr"], "+.2f"),
            fmt_value(s["ssim"], ".3f", "n/a"),
            fmt_value(s["normal_mae_deg"], ".1f", "n/a"),
            fmt_value(s["chamfer"], ".4f", "n/a"),
            _reached(s["t_psnr"], seen),
        ]
        cells += [_reached(s["t_chamfer"], seen and s["chamfer"] is not None)] if tc is not None else []
        cells += [fmt_value(s["peak_rss_mib"], ".0f")] + ([fmt_value(s["peak_cuda_mib"], ".0f")] if cuda else [])
        cells += [s["status"].replace("|", "/").replace("\n", " ")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, spec: AblationSpec, outcomes: list[Outcome]) -> str:
    """ablation.csv, ablation.md, ablation.png; returns the Markdown."""
    with open(out / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for o in outcomes:
            for r in o.rows:
                writer.writerow({k: "" if r.get(k) is None else r[k] for k in ROW_FIELDS})
    md = markdown(spec, summarize(spec, outcomes))
    (out / "ablation.md").write_text(md + "\n")
    series = {o.variant.name: o.rows for o in outcomes}
    panels = [MetricPanel("psnr", "PSNR (dB)", spec.target_psnr)]
    if any(r.get("chamfer") is not None and math.isfinite(r["chamfer"]) for rows in series.values() for r in rows):
        panels.append(MetricPanel("chamfer", "Chamfer (world units)", spec.target_chamfer, log=True))
    plot_metric_grid(
        {dataset_label(spec): series},
        panels,
        out / "ablation.png",
        f"ablation {spec.name}: {spec.minutes * 60:.0f} s training per variant",
        spec.minutes * 60,
    )
    return md


# ----------------------------------------------------------------------------- entry


def run_ablation(
    spec_path: Path,
    out: Path | None = None,
    minutes: float | None = None,
    only: list[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Validate the spec (every selected variant's config), run each variant, write the outputs.

    Returns the output folder. Raises ConfigError before any training when the spec or a variant is
    invalid, and LumisurfError after writing the outputs when a variant's process failed.
    """
    spec = select(load_spec(Path(spec_path)), only, minutes)
    configs = build_configs(spec)
    out = Path(out) if out is not None else default_out(spec)
    prepare_out(out, list(configs), force)
    ran = {}
    for k, v in enumerate(spec.variants, 1):
        print(
            f"[{k}/{len(spec.variants)}] {v.name}: preset {v.preset} {' '.join(v.overrides)} "
            f"({spec.minutes * 60:.0f} s training)",
            flush=True,
        )
        ran[v.name] = run_variant(out, spec, v, configs[v.name], progress)
    outcomes = list(ran.values())
    # the table also keeps the spec's other variants already in --out (a rerun of one variant with --only)
    full = load_spec(Path(spec_path))
    kept = {
        v.name: load_outcome(out / "variants" / v.name, v)
        for v in full.variants
        if v.name not in ran and (out / "variants" / v.name / "result.json").exists()
    }
    table = [ran.get(v.name) or kept.get(v.name) for v in full.variants]
    md = write_outputs(out, spec, [o for o in table if o is not None])
    print(f"\n{md}\n\nwrote {out / 'ablation.csv'}, {out / 'ablation.md'}, {out / 'ablation.png'}", flush=True)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise LumisurfError(
            f"{len(failed)} of {len(outcomes)} variant(s) failed: "
            + "; ".join(f"{o.variant.name}: {o.result.get('error')}" for o in failed)
        )
    return out
