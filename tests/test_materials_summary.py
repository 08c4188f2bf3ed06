"""benchmarks/materials_summary.py: the per-variant medians / worst cases and the GT-dielectric metallic MAE."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "materials_summary.py"
_spec = importlib.util.spec_from_file_location("materials_summary", SCRIPT)
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)

METAL = {"id": 1, "metallic": 1.0, "roughness": 0.3}
DIEL = {"id": 2, "metallic": 0.0, "roughness": 0.17}


def test_dielectric_metallic_mae_reads_the_dielectric_materials_only():
    row = {"metallic_mae": 0.4, "metallic_mae_id1": 0.7, "metallic_mae_id2": 0.1}
    assert summary.dielectric_metallic_mae(row, [METAL, DIEL]) == 0.1
    assert summary.dielectric_metallic_mae(row, [dict(DIEL, id=1)]) == 0.4  # one material: the whole object
    assert summary.dielectric_metallic_mae(row, [METAL]) is None
    assert summary.describe([METAL, DIEL]) == "metal r0.30 + dielectric r0.17"


def test_stats_median_and_worst_by_direction():
    rows = [{"psnr": 20.0, "mae": 0.1}, {"psnr": 26.0, "mae": 0.5}, {"psnr": 24.0, "mae": None}]
    assert summary.stats(rows, "psnr", True) == "24.00 / 20.00"  # worst PSNR is the lowest
    assert summary.stats(rows, "mae", False) == "0.300 / 0.500"  # worst MAE is the highest; None skipped
    assert summary.stats(rows, "missing", True) == "-"


def test_summary_pairs_each_variant_with_default_on_the_same_runs():
    rows = [
        {"stage1": "a", "variant": "default", "relight_psnr_scaled": 20.0},
        {"stage1": "b", "variant": "default", "relight_psnr_scaled": 30.0},
        {"stage1": "a", "variant": "prior", "relight_psnr_scaled": 22.0},
    ]
    lines = summary.summary(rows)
    prior = next(line for line in lines if line.startswith("| prior"))
    assert "20.00 / 20.00 (1 runs)" in prior  # default on run a only
