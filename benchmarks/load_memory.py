"""Peak memory of loading a large capture: N photos of W x H (default 100 of 12 MP) as a COLMAP dataset.

Writes the photos (smooth random colors, JPEG quality 90) and a PINHOLE model with cameras on a circle into a
temporary folder, then loads it the way training does (``load_config_scene``) at each ``--downscale`` in a fresh
process, and prints the peak resident memory (``ru_maxrss``) and the bytes the images take.

    python benchmarks/load_memory.py [--views 100] [--width 4000] [--height 3000] [--downscale 1 2]
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_dataset(root: Path, n: int, w: int, h: int) -> None:
    (root / "images").mkdir(parents=True)
    (root / "sparse" / "0").mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.random((h // 100 + 1, w // 100 + 1, 3))
    (root / "sparse" / "0" / "cameras.txt").write_text(f"1 PINHOLE {w} {h} {0.8 * w} {0.8 * w} {w / 2} {h / 2}\n")
    lines = []
    for k in range(n):
        img = Image.fromarray((base * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
        img.save(root / "images" / f"{k:04d}.jpg", quality=90)
        a = 2 * math.pi * k / n  # camera on a circle of radius 4 looking at the origin: world-to-camera pose
        qw, qy = math.cos((-a - math.pi / 2) / 2), math.sin((-a - math.pi / 2) / 2)
        lines.append(f"{k + 1} {qw} 0 {qy} 0 0 0 4 1 {k:04d}.jpg\n\n")
        base = np.roll(base, 1, axis=1)
    (root / "sparse" / "0" / "images.txt").write_text("".join(lines))


def load_once(root: str, downscale: int) -> None:
    from lumisurf.config import DataConfig
    from lumisurf.data.load import load_raw_scene

    t0 = time.perf_counter()
    scene = load_raw_scene(DataConfig(path=root, downscale=downscale, holdout_every=0))
    images = sum(s.images.numel() * s.images.element_size() for s in scene.splits.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    sp = scene.split("train")
    print(
        f"| {len(sp)} | {sp.images.shape[2]}x{sp.images.shape[1]} | {downscale} | {sp.images.dtype} | "
        f"{images / 2**30:.2f} | {peak:.2f} | {time.perf_counter() - t0:.0f} |",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--views", type=int, default=100)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--downscale", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--_load", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._load:
        load_once(a._load[0], int(a._load[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_dataset(Path(tmp), a.views, a.width, a.height)
        print(f"wrote {a.views} photos of {a.width}x{a.height} in {time.perf_counter() - t0:.0f} s")
        print("| views | loaded size | downscale | dtype | images (GiB) | peak RSS (GiB) | load (s) |")
        print("|---:|---|---:|---|---:|---:|---:|")
        for ds in a.downscale:  # a fresh process each: ru_maxrss is a high-water mark
            subprocess.run([sys.executable, __file__, "--_load", tmp, str(ds)], check=True)


if __name__ == "__main__":
    main()
