"""One ablation variant in its own process: ``python -m lumisurf.bench.variant JOB.json``.

The job file (written by :mod:`lumisurf.bench.ablate`) holds the variant's full config and the
evaluation settings. The child trains under the wall-clock budget with paused-clock evaluations,
appends one row per evaluation to ``rows.csv`` beside the job file, exports the last extracted mesh
(``mesh.ply``, world frame) and writes ``result.json`` (steps, peak memory, or the error). Running in
a fresh process makes the peak memory (``ru_maxrss`` of this process; CUDA peak allocation when
training on a GPU) that of this variant alone.
"""

from __future__ import annotations

import csv
import json
import resource
import sys
import traceback
from pathlib import Path

from lumisurf.bench.time_to_target import CheckpointEvaluator, EvalSettings, fmt_value, train_with_evals
from lumisurf.config import Config, from_dict, save_config
from lumisurf.data.load import load_config_scene
from lumisurf.errors import LumisurfError
from lumisurf.kinds import build_trainer
from lumisurf.train.run_dir import RunDir

ROW_FIELDS = (
    "variant",
    "preset",
    "dataset",
    "train_seconds",
    "steps",
    "psnr",
    "ssim",
    "normal_mae_deg",
    "chamfer",
    "eval_seconds",
    "peak_rss_mib",
    "peak_cuda_mib",
)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def peak_cuda_mib(device) -> float | None:
    """``torch.cuda.max_memory_allocated`` of ``device`` in MiB; None off CUDA."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / (1024.0 * 1024.0)


def _cell(v):
    if v is None:
        return ""
    return v


def run_job(job_path: Path) -> dict:
    """Train and evaluate the variant of ``job_path``; returns (and writes) the result record."""
    from tqdm import tqdm

    job = json.loads(Path(job_path).read_text())
    root = Path(job_path).parent
    cfg = from_dict(Config, job["config"])
    save_config(cfg, root / "config.yaml")
    scene = load_config_scene(cfg.data)
    (root / "ckpt").mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(cfg, RunDir(root), scene=scene, progress=False)  # neural field or sparse voxels
    evaluator = CheckpointEvaluator(scene, EvalSettings(**job["eval"]))
    ident = {"variant": job["variant"], "preset": cfg.preset, "dataset": job["dataset"]}

    with open(root / "rows.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()

        def evaluate(t) -> dict:
            row = {**ident, **evaluator(t)}
            cuda = peak_cuda_mib(t.device)
            row.update(peak_rss_mib=round(peak_rss_mib(), 1), peak_cuda_mib=None if cuda is None else round(cuda, 1))
            return row

        def on_row(row: dict) -> None:
            writer.writerow({k: _cell(row.get(k)) for k in ROW_FIELDS})
            f.flush()
            tqdm.write(
                f"  {row['variant']:>22}  t={row['train_seconds']:7.1f}s steps={row['steps']:6d}  "
                f"psnr={fmt_value(row['psnr'], '.2f')}  ssim={fmt_value(row['ssim'], '.3f', 'n/a')}  "
                f"chamfer={fmt_value(row['chamfer'], '.5f', 'n/a')}  (eval {row['eval_seconds']:.0f}s)"
            )

        rows = train_with_evals(
            trainer,
            job["budget_seconds"],
            job["eval_every"],
            evaluate,
            on_row,
            progress=None if not job.get("progress", True) else job["variant"],
        )
    if evaluator.last_mesh is not None:
        evaluator.last_mesh.export(root / "mesh.ply")
    last = rows[-1] if rows else {}
    return {
        "status": "ok",
        "steps": trainer.step,
        "train_seconds": round(trainer.elapsed, 3),
        "evaluations": len(rows),
        "device": str(trainer.device),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_cuda_mib": last.get("peak_cuda_mib"),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m lumisurf.bench.variant JOB.json", file=sys.stderr)
        return 2
    job_path = Path(argv[0])

    try:
        result = run_job(job_path)
        code = 0
    except LumisurfError as exc:
        result, code = {"status": "failed", "error": str(exc)}, 2
        print(f"lumisurf: error: {exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 (the parent reports it and goes on with the next variant)
        traceback.print_exc()
        result, code = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, 1
    result["peak_rss_mib"] = result.get("peak_rss_mib", round(peak_rss_mib(), 1))
    (job_path.parent / "result.json").write_text(json.dumps(result, indent=2, allow_nan=True))
    return code


if __name__ == "__main__":
    sys.exit(main())
