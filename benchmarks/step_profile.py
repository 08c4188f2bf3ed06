"""Where a training step's time goes: per part, milliseconds (median over steps), for one preset on one scene.

Builds the trainer of ``--preset`` on ``--data`` (default: the built-in scene), trains ``--warmup`` steps, then
times ``--steps`` steps with every part wrapped in a wall-clock timer (inclusive; a part nested in another is
also counted in its parent, the table says which):

* ``schedules``: the schedules' update before the step (the occupancy grid's refresh every 32 steps is in it);
* ``rays``: pixel sampling and ray generation; ``occupancy``: the occupancy grid's ray bounds;
* ``up-sampling``: NeuS' no-grad hierarchical sampling (its SDF queries included);
* ``field fwd``: the SDF and its analytic gradient at the render samples; ``shading fwd``: the color network;
* ``background fwd``: the NeRF++ background; ``losses``: every loss term;
* ``backward``: ``loss.backward()``; ``optimizer``: the optimiser step; ``step``: the whole step.

Steps are the training loop's guarded steps (schedules, then the step), as in ``lumisurf train``. Each part is
the median over the timed steps; ``step (mean)`` is the mean step, which also counts the occupancy grid's refresh
(every 32 steps). ``--threads`` sets the hash grid's concurrent Warp CPU launches (only with
``model.sdf.grid.implementation=warp``).

A cheaper step must not be a worse step: ``--chamfer-steps 1000 4000 --seeds 0 1 2`` trains, extracts and evaluates
runs of exactly that many steps (``benchmarks/sweep.py``'s pipeline, one at a time) and prints the same seeds'
Chamfer, this code against ``--baseline DIR`` (a checkout of the old code, e.g. a git worktree) when given.
``--variants '' 'K=V K=V' ...`` times config variants side by side in one process (their steps interleaved).

    python benchmarks/step_profile.py [--data DIR] [--preset lumisurf] [--steps 30] [--threads 1 2] [--set K=V ...]
        [--markdown benchmarks/results/step_profile.md]
    python benchmarks/step_profile.py --data ../shared/data/glossy_bunny --chamfer-steps 1000 4000 --seeds 0 1 2 \
        --baseline ../lumisurf-old --markdown benchmarks/results/chamfer_at_step.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from lumisurf.config import apply_overrides, merge
from lumisurf.encodings import hash_grid_warp
from lumisurf.models.surface import SurfaceModel
from lumisurf.presets import preset_config
from lumisurf.samplers.occupancy import OccupancyGrid
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer

_ACC: dict[str, float] = defaultdict(float)
PARTS = (
    "schedules",
    "rays",
    "occupancy",
    "up-sampling",
    "field fwd",
    "shading fwd",
    "background fwd",
    "losses",
    "backward",
    "optimizer",
    "step",
)


def _wrap(owner, name: str, part: str) -> None:
    fn = getattr(owner, name)
    fn = getattr(fn, "_untimed", fn)  # classes are instrumented once per profile: never time a part twice

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _ACC[part] += time.perf_counter() - t0

    timed._untimed = fn
    setattr(owner, name, timed)


def instrument(trainer: Trainer) -> None:
    _wrap(trainer.sampler, "sample", "rays")
    _wrap(trainer.cameras, "rays", "rays")
    _wrap(OccupancyGrid, "ray_bounds", "occupancy")
    _wrap(SurfaceModel, "_sample_t", "up-sampling")
    _wrap(SurfaceModel, "shade", "shading fwd")
    _wrap(SurfaceModel, "_background", "background fwd")
    _wrap(trainer.model.sdf, "sdf_and_gradient", "field fwd")
    _wrap(trainer, "_loss_terms", "losses")
    _wrap(trainer, "update_schedules", "schedules")
    _wrap(torch.Tensor, "backward", "backward")
    _wrap(trainer.optimizer, "step", "optimizer")


def profile(
    data: str | None, preset: str, steps: int, warmup: int, threads: int, overrides: list[str] = ()
) -> dict[str, float]:
    hash_grid_warp.set_cpu_threads(threads)
    cfg = merge(preset_config(preset), {"data": {"path": data}, "train": {"max_steps": 10**6}})
    cfg = apply_overrides(cfg, list(overrides))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "run").mkdir()
        trainer = Trainer(cfg, RunDir(Path(tmp) / "run"), progress=False)
        for _ in range(warmup):
            trainer.guarded_step()
        instrument(trainer)
        per_step: dict[str, list[float]] = defaultdict(list)
        for _ in range(steps):
            _ACC.clear()
            t0 = time.perf_counter()
            trainer.guarded_step()
            _ACC["step"] = time.perf_counter() - t0
            for part in PARTS:
                per_step[part].append(_ACC.get(part, 0.0) * 1e3)
    out = {part: statistics.median(v) for part, v in per_step.items()}
    out["step (mean)"] = statistics.fmean(per_step["step"])  # the occupancy refreshes (every 32 steps) count here
    return out


def _trainer(data: str | None, preset: str, overrides: list[str], root: Path) -> Trainer:
    cfg = apply_overrides(
        merge(preset_config(preset), {"data": {"path": data}, "train": {"max_steps": 10**6}}), overrides
    )
    root.mkdir(parents=True)
    return Trainer(cfg, RunDir(root), progress=False)


def compare_variants(
    data: str | None, preset: str, variants: list[str], warmup: int, rounds: int, per_round: int = 8
) -> str:
    """Mean step time of config variants measured side by side: every variant's trainer is warmed up, then the
    variants take turns (``per_round`` steps each, ``rounds`` times), so a machine that speeds up or slows down
    in between (this one does, by 10-30 %) weighs on all of them alike. A Markdown table."""
    with tempfile.TemporaryDirectory() as tmp:
        trainers = [_trainer(data, preset, v.split(), Path(tmp) / f"v{i}") for i, v in enumerate(variants)]
        for tr in trainers:
            for _ in range(warmup):
                tr.guarded_step()
        times: list[list[float]] = [[] for _ in variants]
        for _ in range(rounds):
            for i, tr in enumerate(trainers):
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    tr.guarded_step()
                    times[i].append((time.perf_counter() - t0) * 1e3)
    base = statistics.fmean(times[0])
    lines = [
        f"preset={preset} data={data or '<built-in>'}: {warmup} warm-up steps each, then {rounds} rounds of "
        f"{per_round} steps per variant in turn (occupancy refreshes included)",
        "",
        "| variant | mean step ms | median step ms | vs the first |",
        "|---|---:|---:|---:|",
    ]
    for v, t in zip(variants, times):
        lines.append(
            f"| {v or '(preset)'} | {statistics.fmean(t):.1f} | {statistics.median(t):.1f} | "
            f"{base / statistics.fmean(t):.2f}x |"
        )
    return "\n".join(lines) + "\n"


def chamfer_at_steps(args) -> str:
    """The same seeds' Chamfer after exactly N training steps, this code and ``--baseline``; a Markdown table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sweep import run_one

    if args.data is None:
        raise SystemExit("--chamfer-steps needs --data (a dataset with a ground-truth mesh)")
    sides = ([("before", args.baseline)] if args.baseline else []) + [("after", None)]
    res: dict = {}
    for label, code in sides:
        for steps in args.chamfer_steps:
            for seed in args.seeds:
                out = args.runs_root / f"{label}-{args.preset}-{steps}-s{seed}"
                if (out / "row.json").exists():  # an interrupted check continues
                    row = json.loads((out / "row.json").read_text())
                else:
                    print(f"$ {label}: {steps} steps, seed {seed}", flush=True)
                    row = run_one(
                        Path(args.data), args.preset, seed, ["--max-steps", str(steps)], out, args.set, code=code
                    )
                    (out / "row.json").write_text(json.dumps(row))
                res[(label, steps, seed)] = row
    cols = [label for label, _ in sides]
    lines = [
        f"preset={args.preset} data={args.data} overrides={' '.join(args.set) or '-'}; runs of exactly N steps "
        f"(train, extract, eval), one at a time",
        "",
        "| steps | seed | " + " | ".join(f"{c} Chamfer | {c} PSNR | {c} train s" for c in cols) + " |",
        "|---|---|" + "---:|---:|---:|" * len(cols),
    ]
    for steps in args.chamfer_steps:
        for seed in [*args.seeds, "median"]:
            cells = []
            for c in cols:
                rows = [res[(c, steps, s)] for s in args.seeds] if seed == "median" else [res[(c, steps, seed)]]
                for key, spec in (("chamfer", ".4f"), ("psnr", ".2f"), ("train_seconds", ".0f")):
                    vals = [r.get(key) for r in rows if isinstance(r.get(key), (int, float))]
                    cells.append(format(statistics.median(vals), spec) if vals else "-")
            lines.append(f"| {steps} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="dataset folder (default: the built-in scene)")
    ap.add_argument("--preset", default="lumisurf")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument(
        "--chamfer-steps",
        type=int,
        nargs="*",
        default=[],
        help="instead of profiling: Chamfer of runs of exactly these step counts (see above)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout of the old code for --chamfer-steps")
    ap.add_argument("--runs-root", type=Path, default=Path("runs/chamfer_at_step"))
    ap.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="'K=V K=V'",
        help="instead of profiling: mean step time of these override sets side by side ('' = the preset)",
    )
    ap.add_argument("--rounds", type=int, default=8, help="--variants: rounds of 8 steps per variant")
    args = ap.parse_args()
    if args.variants:
        text = compare_variants(args.data, args.preset, args.variants, args.warmup, args.rounds)
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
        return
    if args.chamfer_steps:
        text = chamfer_at_steps(args)
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
        return
    cols = [profile(args.data, args.preset, args.steps, args.warmup, t, args.set) for t in args.threads]
    head = " | ".join(f"{t} Warp thread{'s' if t > 1 else ''} (ms)" for t in args.threads)
    lines = [
        f"preset={args.preset} data={args.data or '<built-in>'} steps={args.steps} (after {args.warmup} warm-up) "
        f"torch_threads={torch.get_num_threads()}; medians over steps, parts inclusive "
        "(up-sampling and field/shading/background fwd are inside the forward; field fwd excludes up-sampling)",
        "",
        f"| part | {head} |",
        "|---|" + "---:|" * len(cols),
    ]
    for part in PARTS + ("step (mean)",):
        lines.append(f"| {part} | " + " | ".join(f"{c[part]:.1f}" for c in cols) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
