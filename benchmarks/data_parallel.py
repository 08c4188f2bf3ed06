"""What data-parallel training (``lumisurf train --nproc N``) does here: ms per step and the last-batch PSNR of the
built-in scene for 1 and N ranks over the same global batch (``train.batch_rays``), on this machine's CPUs.

Each configuration trains ``--steps`` steps from the same seed in its own process group; configurations alternate
over ``--repeats`` rounds. The step time is the median over the steps after the first 20 (compilation, the first
occupancy refresh). With N ranks on one CPU each renders B/N rays with cores/N threads, so on a CPU machine the
figure shows the cost of the all-reduce and the split, not a speed-up; on N GPUs each rank has its own device.

    python benchmarks/data_parallel.py [--steps 200] [--repeats 2] [--ranks 1 2] [--preset lumisurf] [--batch 2048]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def run_once(ranks: int, steps: int, preset: str, batch: int, seed: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="data_parallel_")) / "run"
    cmd = [
        sys.executable,
        "-m",
        "lumisurf",
        "train",
        "--nproc",
        str(ranks),
        "--preset",
        preset,
        "--device",
        "cpu",
        "--max-steps",
        str(steps),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--no-progress",
        f"train.batch_rays={batch}",
        "train.log_every=1",
        "train.val_every=0",
        "train.finalize=false",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    with open(out / "scalars.csv") as f:
        rows = list(csv.DictReader(f))
    seconds = np.array([float(r["seconds"]) for r in rows])
    per_step = np.diff(seconds)[20:] * 1000.0
    return {
        "ranks": ranks,
        "ms_per_step": float(np.median(per_step)),
        "train_s": float(seconds[-1]),
        "psnr_last20": float(np.mean([float(r["psnr"]) for r in rows[-20:]])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--preset", default="lumisurf")
    ap.add_argument("--batch", type=int, default=2048, help="global rays per step (split between the ranks)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    results = []
    for k in range(a.repeats):
        for ranks in a.ranks:
            r = run_once(ranks, a.steps, a.preset, a.batch, a.seed)
            results.append(r)
            print(
                f"round {k + 1}: {ranks} rank(s): {r['ms_per_step']:.1f} ms/step, {r['train_s']:.1f} s for "
                f"{a.steps} steps, PSNR (last 20 steps) {r['psnr_last20']:.2f}",
                flush=True,
            )
    print(f"\npreset {a.preset}, {a.batch} rays per step in all, {a.steps} steps, seed {a.seed}, {a.repeats} rounds")
    print("| ranks | median ms / step (range) | speed vs 1 rank | PSNR last 20 steps (range) |")
    print("|---:|---:|---:|---:|")
    base = np.median([r["ms_per_step"] for r in results if r["ranks"] == a.ranks[0]])
    for ranks in a.ranks:
        ms = [r["ms_per_step"] for r in results if r["ranks"] == ranks]
        ps = [r["psnr_last20"] for r in results if r["ranks"] == ranks]
        print(
            f"| {ranks} | {np.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f}) | {base / np.median(ms):.2f}x | "
            f"{np.median(ps):.2f} ({min(ps):.2f}-{max(ps):.2f}) |"
        )


if __name__ == "__main__":
    main()
