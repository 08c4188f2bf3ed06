"""`lumisurf bench ablate`: spec validation before any training, the paused-clock evaluation loop,
and a 2-variant end-to-end run on the built-in scene through the CLI (csv/md/png)."""

import csv
import math
from pathlib import Path

import pytest
import yaml

from lumisurf.bench.ablate import Outcome, markdown, summarize
from lumisurf.bench.spec import AblationSpec, VariantSpec, build_configs, load_spec, resolve_dataset, select
from lumisurf.bench.variant import ROW_FIELDS
from lumisurf.cli import main
from lumisurf.errors import ConfigError

# the built-in scene is already inside the unit sphere: identity normalisation skips the visual hull
DATA = ["data.synthetic_resolution=16", "data.synthetic_views=4", "data.normalization=identity"]
TINY = DATA + [
    "train.batch_rays=32",
    "sampler.n_samples=8",
    "sampler.n_importance=8",
    "sampler.up_sample_steps=2",
    "model.background.n_samples=4",
    "model.sdf.hidden=64",
    "model.sdf.feature_dim=32",
    "model.color.hidden=32",
]


def write_spec(tmp_path: Path, name: str = "tiny", **changes) -> Path:
    spec = {
        "dataset": None,
        "minutes": 0.02,
        "eval_every": 0.6,
        "target_psnr": 8.0,
        "target_chamfer": 0.5,
        "eval_views": 2,
        "eval_downscale": 1,
        "mesh_resolution": 16,
        "chamfer_samples": 1000,
        "seed": 0,
        "device": "cpu",
        "overrides": TINY,
        "variants": [
            {"name": "neus", "preset": "neus"},
            {"name": "neus-no-eikonal", "preset": "neus", "overrides": ["loss.eikonal_weight=0"]},
        ],
    }
    spec.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# ----------------------------------------------------------------------------- validation


def test_valid_spec_builds_every_variant_config(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert spec.name == "tiny" and spec.dataset is None and spec.minutes == pytest.approx(0.02)
    cfgs = build_configs(spec)
    assert list(cfgs) == ["neus", "neus-no-eikonal"]
    assert cfgs["neus"].loss.eikonal_weight == 0.1 and cfgs["neus-no-eikonal"].loss.eikonal_weight == 0.0
    # spec-wide settings reach every variant; the variant's own overrides come last
    for cfg in cfgs.values():
        assert cfg.train.max_minutes == pytest.approx(0.02) and cfg.train.device == "cpu"
        assert cfg.data.path is None and cfg.data.synthetic_resolution == 16 and cfg.train.seed == 0
    sub = select(spec, only=["neus-no-eikonal"], minutes=0.5)
    assert [v.name for v in sub.variants] == ["neus-no-eikonal"] and sub.minutes == 0.5


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": 1}, "unknown key(s) ['learning_rate']"),
        ({"minutes": "five"}, "minutes: expected float"),
        ({"minutes": 0}, "minutes must be > 0"),
        ({"variants": []}, "at least one variant"),
        ({"variants": [{"name": "a", "preset": "neus", "extra": 1}]}, "variants.extra"),
        ({"variants": [{"name": "a/b", "preset": "neus"}]}, "names a folder"),
        ({"variants": [{"name": "a", "preset": "neus"}, {"name": "a", "preset": "lumisurf"}]}, "used twice"),
        ({"variants": [{"name": "a"}]}, "missing 'preset'"),
        ({"dataset": "no_such_dataset"}, "dataset folder"),
    ],
)
def test_bad_spec_is_one_clear_line(tmp_path, changes, message):
    with pytest.raises(ConfigError) as err:
        load_spec(write_spec(tmp_path, **changes))
    assert message in str(err.value) and str(tmp_path / "tiny.yaml") in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_dataset_key_and_missing_file(tmp_path):
    path = write_spec(tmp_path)
    raw = yaml.safe_load(path.read_text())
    del raw["dataset"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="missing required key 'dataset'"):
        load_spec(path)
    with pytest.raises(ConfigError, match="not found"):
        load_spec(tmp_path / "absent.yaml")


def test_dataset_paths_resolve_beside_the_spec_and_from_shared(tmp_path, monkeypatch):
    (tmp_path / "data" / "scene").mkdir(parents=True)
    assert resolve_dataset("data/scene", tmp_path) == (tmp_path / "data" / "scene").resolve()
    monkeypatch.setenv("SHARED", str(tmp_path / "data"))
    assert resolve_dataset("${SHARED}/scene", Path("/elsewhere")) == (tmp_path / "data" / "scene").resolve()
    assert load_spec(write_spec(tmp_path, dataset="${SHARED}/scene")).dataset == str(
        (tmp_path / "data" / "scene").resolve()
    )
    assert resolve_dataset(None, tmp_path) is None


def test_bad_override_key_or_preset_fails_before_training(tmp_path, capsys):
    variants = [
        {"name": "ok", "preset": "neus"},
        {"name": "bad-key", "preset": "neus", "overrides": ["loss.no_such_weight=1"]},
        {"name": "bad-preset", "preset": "no-such-preset"},
    ]
    spec_path = write_spec(tmp_path, variants=variants)
    with pytest.raises(ConfigError) as err:
        build_configs(load_spec(spec_path))
    msg = str(err.value)
    assert "2 of 3 variant(s) invalid" in msg and "nothing was trained" in msg
    assert "bad-key" in msg and "loss.no_such_weight" in msg and "unknown preset 'no-such-preset'" in msg
    out = tmp_path / "out"
    assert main(["bench", "ablate", str(spec_path), "--out", str(out)]) == 2
    assert "loss.no_such_weight" in capsys.readouterr().err
    assert not out.exists()  # nothing was started
    # --only selects the valid variants; an unknown name is an error too
    assert main(["bench", "ablate", str(spec_path), "--out", str(out), "--only", "nope"]) == 2
    assert "--only: no variant(s) ['nope']" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the loop and the summary


def test_paused_clock_loop_and_evaluator(tiny_scene, tmp_path):
    import time

    from lumisurf.bench.time_to_target import CheckpointEvaluator, EvalSettings, train_with_evals
    from lumisurf.config import apply_overrides
    from lumisurf.presets import preset_config
    from lumisurf.train.run_dir import RunDir
    from lumisurf.train.trainer import Trainer

    cfg = apply_overrides(preset_config("neus"), TINY[len(DATA) :] + ["train.device=cpu", "train.max_steps=2"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    settings = EvalSettings(n_views=2, downscale=1, mesh_resolution=16, chamfer_samples=500)
    trainer = Trainer(cfg, RunDir(tmp_path / "a"), scene=tiny_scene, progress=False)
    inner = CheckpointEvaluator(tiny_scene, settings)

    def slow_eval(t):  # evaluation time must not count as training time
        time.sleep(0.2)
        return inner(t)

    # an evaluation after every step, ended by train.max_steps
    t0 = time.perf_counter()
    rows = train_with_evals(trainer, budget_s=600.0, every_s=1e-4, evaluate=slow_eval)
    wall = time.perf_counter() - t0
    assert [r["steps"] for r in rows] == [1, 2] and trainer.step == 2
    assert trainer.elapsed < wall - 0.2 * len(rows)  # the clock was paused while evaluating
    assert rows[-1]["train_seconds"] == pytest.approx(trainer.elapsed, abs=0.01)
    for r in rows:
        assert set(r) == {"train_seconds", "steps", "psnr", "ssim", "normal_mae_deg", "chamfer", "eval_seconds"}
        assert 0 < r["psnr"] < 60 and -1 <= r["ssim"] <= 1 and 0 <= r["normal_mae_deg"] <= 180
        assert r["chamfer"] is not None  # the built-in scene has a GT mesh (nan: no surface yet)
        assert r["eval_seconds"] >= 0.2
    # ended by the budget: one step already exceeds 1 ms, then the final evaluation
    trainer = Trainer(cfg, RunDir(tmp_path / "b"), scene=tiny_scene, progress=False)
    rows = train_with_evals(trainer, budget_s=1e-3, every_s=600.0, evaluate=inner)
    assert len(rows) == 1 and rows[0]["steps"] == 1 and rows[0]["train_seconds"] >= 1e-3


def test_summary_marks_failed_and_unreached_variants():
    rows = [
        {
            "train_seconds": 10.0,
            "steps": 5,
            "psnr": 20.0,
            "ssim": 0.5,
            "normal_mae_deg": 30.0,
            "chamfer": math.nan,
            "peak_rss_mib": 500.0,
            "peak_cuda_mib": None,
        },
        {
            "train_seconds": 20.0,
            "steps": 9,
            "psnr": 26.0,
            "ssim": 0.8,
            "normal_mae_deg": 20.0,
            "chamfer": 0.02,
            "peak_rss_mib": 510.0,
            "peak_cuda_mib": None,
        },
    ]
    spec = AblationSpec(
        target_psnr=25.0, target_chamfer=0.01, name="x", variants=(VariantSpec("a", "neus"), VariantSpec("b", "nero"))
    )
    outcomes = [
        Outcome(spec.variants[0], rows, {"status": "ok", "steps": 9, "peak_rss_mib": 512.0}),
        Outcome(spec.variants[1], [], {"status": "failed", "error": "unknown preset 'nero'"}),
    ]
    summary = summarize(spec, outcomes)
    assert summary[0]["t_psnr"] == 20.0 and summary[0]["t_chamfer"] is None and summary[0]["d_psnr"] == 0.0
    assert summary[0]["peak_rss_mib"] == 512.0 and summary[1]["status"].startswith("failed")
    md = markdown(spec, summary).splitlines()
    a, b = md[-2], md[-1]
    assert "| 26.00 |" in a and "| 20 | not reached |" in a and "| 512 |" in a
    assert "failed: unknown preset 'nero'" in b


# ----------------------------------------------------------------------------- end to end


def test_two_variants_end_to_end_through_the_cli(tmp_path, capsys):
    # one evaluation per step, 2 steps (train.max_steps ends the run well before the 0.5 min budget)
    spec_path = write_spec(tmp_path, minutes=0.5, eval_every=1e-4, eval_views=1, overrides=TINY + ["train.max_steps=2"])
    out = tmp_path / "out"
    assert main(["bench", "ablate", str(spec_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| variant | preset |" in printed and "neus-no-eikonal" in printed
    for name in ("ablation.csv", "ablation.md", "ablation.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "ablation.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == ROW_FIELDS
        rows = list(reader)
    for variant in ("neus", "neus-no-eikonal"):
        mine = [r for r in rows if r["variant"] == variant]
        assert [int(r["steps"]) for r in mine] == [1, 2]
        # the clock only moves forward; a fast machine may make both steps within the csv's 1 ms resolution
        assert 0 < float(mine[0]["train_seconds"]) <= float(mine[-1]["train_seconds"]) < 30
        assert 0 < float(mine[-1]["psnr"]) < 60 and 0 < float(mine[-1]["peak_rss_mib"]) < 64 * 1024
        assert mine[-1]["ssim"] != "" and mine[-1]["normal_mae_deg"] != "" and mine[-1]["chamfer"] != ""
        assert (out / "variants" / variant / "config.yaml").exists()
    md = (out / "ablation.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| neus")]
    assert len(table) == 2 and all(ln.rstrip().endswith("| ok |") for ln in table)
    assert "s to PSNR 8" in md and "s to Chamfer 0.5" in md and "peak RSS MiB" in md
    # the variant's config is what the spec asked for
    cfg = yaml.safe_load((out / "variants" / "neus-no-eikonal" / "config.yaml").read_text())
    assert cfg["loss"]["eikonal_weight"] == 0.0 and cfg["model"]["sdf"]["hidden"] == 64
    # results are never replaced without --force
    assert main(["bench", "ablate", str(spec_path), "--out", str(out), "--only", "neus"]) == 2
    assert "--force" in capsys.readouterr().err
    # rerunning one variant replaces its folder and rows; the table keeps the other variant's results
    before = (out / "variants" / "neus-no-eikonal" / "result.json").read_text()
    assert main(["bench", "ablate", str(spec_path), "--out", str(out), "--only", "neus", "--force"]) == 0
    md = (out / "ablation.md").read_text()
    assert [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("| neus")] == [
        "neus",
        "neus-no-eikonal",
    ]
    assert (out / "variants" / "neus-no-eikonal" / "result.json").read_text() == before
    with open(out / "ablation.csv", newline="") as f:
        assert {r["variant"] for r in csv.DictReader(f)} == {"neus", "neus-no-eikonal"}


def test_sparse_voxel_variants_through_bench_ablate(tmp_path, capsys):
    """Both voxel presets run as ablation variants (their own trainer, the same evaluator and table)."""
    voxels = DATA + ["voxels.model.init_level=4", "train.max_steps=2"]
    spec_path = write_spec(
        tmp_path,
        minutes=0.5,
        eval_every=1e-4,
        eval_views=1,
        overrides=voxels,
        variants=[
            {"name": "svr", "preset": "svraster", "overrides": ["voxels.model.geo_init=0.0"]},
            {"name": "svr-sdf", "preset": "svraster-sdf"},
        ],
    )
    out = tmp_path / "out"
    assert main(["bench", "ablate", str(spec_path), "--out", str(out)]) == 0
    with open(out / "ablation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for variant in ("svr", "svr-sdf"):
        mine = [r for r in rows if r["variant"] == variant]
        assert [int(r["steps"]) for r in mine] == [1, 2] and float(mine[-1]["psnr"]) > 0
    table = [ln for ln in (out / "ablation.md").read_text().splitlines() if ln.startswith("| svr")]
    assert len(table) == 2 and all(ln.rstrip().endswith("| ok |") for ln in table)


def test_early_evaluations_are_denser():
    """``early=(every, until)``: evaluations every ``every`` training seconds until ``until``, then every
    ``every_s``; a fake trainer whose steps take exactly 1 s of training time."""
    from types import SimpleNamespace

    from lumisurf.bench.time_to_target import train_with_evals

    class FakeTrainer:
        cfg = SimpleNamespace(train=SimpleNamespace(max_steps=10**6))
        step, elapsed = 0, 0.0

        def set_budget(self, seconds):
            pass

        def guarded_step(self):
            self.step += 1
            self.elapsed += 1.0 - 1e-9  # the loop adds the wall time of the (instant) step on top

    rows = train_with_evals(
        FakeTrainer(),
        budget_s=40.0,
        every_s=10.0,
        early=(2.0, 10.0),
        evaluate=lambda t: {"train_seconds": round(t.elapsed), "steps": t.step},
    )
    assert [r["train_seconds"] for r in rows] == [2, 4, 6, 8, 10, 20, 30, 40]
