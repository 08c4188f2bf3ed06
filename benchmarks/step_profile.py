"""Where a training step's time goes: per part, milliseconds (median over steps), for one preset on one scene.

Builds the trainer of ``--preset`` on ``--data`` (default: the built-in scene), trains ``--warmup`` steps, then
times ``--steps`` steps with every part wrapped in a wall-clock timer (inclusive; a part nested in another is
also counted in its parent, the table says which):

* ``schedules``: the schedules' update before the step (the occupancy grid's refresh every 32 steps is in it);
* ``rays``: pixel sampling and ray generation; ``occupancy``: the occupancy grid's ray bounds;
* ``up-sampling``: NeuS' no-grad hierarchical sampling (its SDF queries included);
* ``field fwd``: the SDF and its analytic gradient at the render samples; ``shading fwd``: the colour network;
* ``background fwd``: the NeRF++ background; ``losses``: every loss term;
* ``backward``: ``loss.backward()``; ``optimizer``: the optimiser step; ``step``: the whole step.

Steps are the training loop's guarded steps (schedules, then the step), as in ``lumisurf train``.
``--threads`` sets the hash grid's concurrent Warp CPU launches (``hash_grid_warp.set_cpu_threads``).

    python benchmarks/step_profile.py [--data DIR] [--preset lumisurf] [--steps 30] [--threads 1 2]
        [--markdown benchmarks/results/step_profile.md]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from lumisurf.config import merge
from lumisurf.encodings import hash_grid_warp
from lumisurf.models.surface import SurfaceModel
from lumisurf.presets import preset_config
from lumisurf.samplers.occupancy import OccupancyGrid
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer

_ACC: dict[str, float] = defaultdict(float)
PARTS = ("schedules", "rays", "occupancy", "up-sampling", "field fwd", "shading fwd", "background fwd", "losses",
         "backward", "optimizer", "step")


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
    _wrap(trainer, "_update_schedules", "schedules")
    _wrap(torch.Tensor, "backward", "backward")
    _wrap(trainer.optimizer, "step", "optimizer")


def profile(data: str | None, preset: str, steps: int, warmup: int, threads: int) -> dict[str, float]:
    hash_grid_warp.set_cpu_threads(threads)
    cfg = merge(preset_config(preset), {"data": {"path": data}, "train": {"max_steps": 10 ** 6}})
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
    return {part: statistics.median(v) for part, v in per_step.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="dataset folder (default: the built-in scene)")
    ap.add_argument("--preset", default="lumisurf")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    cols = [profile(args.data, args.preset, args.steps, args.warmup, t) for t in args.threads]
    head = " | ".join(f"{t} Warp thread{'s' if t > 1 else ''} (ms)" for t in args.threads)
    lines = [f"preset={args.preset} data={args.data or '<built-in>'} steps={args.steps} (after {args.warmup} warm-up) "
             f"torch_threads={torch.get_num_threads()}; medians over steps, parts inclusive "
             "(up-sampling and field/shading/background fwd are inside the forward; field fwd excludes up-sampling)",
             "", f"| part | {head} |", "|---|" + "---:|" * len(cols)]
    for part in PARTS:
        lines.append(f"| {part} | " + " | ".join(f"{c[part]:.1f}" for c in cols) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
