"""Automatic masks (``lumisurf data masks`` / ``data process --masks auto``) against true masks.

* the public scenes with masks (dtu_scan24, ethiopian_head): their given cameras, points triangulated from the
  images (the masks are not used), IoU against their masks;
* the generated textured box of the capture tests (``tests/capture_scene.py``) over texture seeds and view counts:
  photos only, through pycolmap SfM and the SfM points, IoU against the true silhouettes, and the SfM rotation error.

    python benchmarks/auto_masks.py [--data ../shared/data] [--seeds 0 1 2 3] [--views 12 18] [--skip-public]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lumisurf.data.capture.dataset_masks import dataset_auto_masks, write_masks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import capture_scene  # noqa: E402


def public(data: Path, out: Path) -> list[str]:
    rows = []
    for name in ("dtu_scan24", "ethiopian_head"):
        if not (data / name).exists():
            rows.append(f"| {name} | absent | | | |")
            continue
        t0 = time.perf_counter()
        masks, files, size, given = dataset_auto_masks(data / name, progress=False)
        rep = write_masks(masks, files, size, out / name, given)
        rows.append(
            f"| {name} | {len(masks)} | {np.mean(rep.iou):.3f} / {np.median(rep.iou):.3f} / "
            f"{np.min(rep.iou):.3f} | {time.perf_counter() - t0:.0f} | {out / name / 'overview.png'} |"
        )
        print(rows[-1], flush=True)
    return rows


def box(n: int, seed: int) -> str:
    from lumisurf.data.capture.process import ProcessOptions, process_capture
    from lumisurf.data.readers.colmap import read_colmap
    from lumisurf.eval.pose_align import pose_errors

    root = Path(tempfile.mkdtemp(prefix="automask_box_"))
    poses = capture_scene.orbit(n)
    (root / "photos").mkdir()
    for k, c2w in enumerate(poses):
        Image.fromarray(capture_scene.render(c2w, 320, 240, 300.0, tex_seed=10 * seed)).save(
            root / "photos" / f"view_{k:02d}.png"
        )
    t0 = time.perf_counter()
    try:
        rep = process_capture(
            root / "photos", root / "ds", ProcessOptions(progress=False, masks="auto"), log=lambda s: None
        )
    except Exception as e:  # a failed SfM is a result too
        return f"| {n} | {seed} | failed: {str(e)[:60]} | | | |"
    cams = read_colmap(root / "ds", holdout_every=0).split("train")
    idx = [int(Path(f).stem[5:]) for f in cams.files]
    rot = float(np.median(pose_errors(cams.cameras.c2w.numpy(), poses[idx]).rotation_deg))
    gt = capture_scene.box_masks(poses)
    ious = []
    for k in range(n):
        m = np.asarray(Image.open(root / "ds" / "masks" / f"view_{k:02d}.png")) > 127
        ious.append(float((m & gt[k]).sum() / max((m | gt[k]).sum(), 1)))
    return (
        f"| {n} | {seed} | {rep['n_registered']}/{n} | {rot:.2f} | {np.mean(ious):.3f} / {np.min(ious):.3f} | "
        f"{time.perf_counter() - t0:.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", default="runs/bench_auto_masks")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--views", type=int, nargs="+", default=[12, 18])
    ap.add_argument("--skip-public", action="store_true")
    a = ap.parse_args()
    if not a.skip_public:
        print("| scene (given cameras) | views | IoU mean / median / worst | s | overview |\n|---|---:|---|---:|---|")
        public(Path(a.data), Path(a.out))
    print(
        "\n| box views | texture seed | registered | SfM rotation error (deg, median) | IoU mean / worst | s |\n"
        "|---:|---:|---|---:|---|---:|"
    )
    for n in a.views:
        for seed in a.seeds:
            print(box(n, seed), flush=True)


if __name__ == "__main__":
    main()
