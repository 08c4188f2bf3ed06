"""The argument parser of the one command line (:mod:`lumisurf.cli`): every sub-command and its options."""

from __future__ import annotations

import argparse

DESCRIPTION = """The one command line: ``lumisurf train | extract | render | eval | material | relight | data | vis |
bench | view | batch``."""


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a run (Stage I) on a dataset or the built-in scene")
    p.add_argument("--data", help="dataset folder (Blender, NeuS, LLFF, instant-ngp, COLMAP); default: built-in scene")
    p.add_argument("--preset", help="method preset (see lumisurf.presets)")
    p.add_argument("--out", help="run folder (default runs/<data>-<preset>)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-minutes", type=float, help="stop by wall clock, then save")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--viewer", action="store_true", help="serve a live page of the training (viser; extra 'viewer')")
    p.add_argument("--port", type=int, default=8080, help="--viewer: the page's port (on --host)")
    p.add_argument("--host", default="127.0.0.1", help="--viewer: 127.0.0.1 (this machine) or 0.0.0.0")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel ranks on this machine (torchrun: gloo on CPU, "
        "nccl on CUDA, one GPU each); train.batch_rays is split "
        "between them",
    )
    p.add_argument("overrides", nargs="*", help="dotted.key=value config overrides")


def _add_run_commands(sub) -> None:
    p = sub.add_parser("extract", help="marching cubes -> RUN/mesh.ply (dataset world frame)")
    p.add_argument("run")
    p.add_argument("--resolution", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--force", action="store_true", help="replace an existing RUN/mesh.ply")
    p.add_argument(
        "--format",
        nargs="+",
        choices=["ply", "glb", "obj"],
        default=["ply"],
        help="mesh.ply is always written (with vertex colors); glb / obj add copies beside it",
    )
    p.add_argument(
        "--keep-unseen",
        action="store_true",
        help="leave the space no training camera sees as the SDF has it (default: made solid)",
    )
    p.add_argument(
        "--voxels",
        type=int,
        metavar="LEVEL",
        help="instead of a mesh, write RUN/voxels.pt: the SDF of a neural-field run on the voxels of "
        "octree LEVEL within 2 voxels of its surface (warm start: voxels.model.init_from=RUN/voxels.pt)",
    )
    p = sub.add_parser("view", help="a browser page (viser; extra 'viewer'): mesh, cameras, live render of the field")
    p.add_argument("run")
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1: this machine only; 0.0.0.0: the network")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--env", nargs="*", default=[], help="Stage II runs: .hdr maps to relight under (besides the learned one)"
    )
    p = sub.add_parser("render", help="render a split -> RUN/renders/<split>/*.png, or a camera path -> frames + MP4")
    p.add_argument("run")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--path",
        help="orbit | spiral | interp (through the training cameras) | FILE.json "
        "({'frame': 'world', 'cameras': [[4x4 OpenCV c2w], ...]}) instead of a split",
    )
    p.add_argument("--frames", type=int, default=60, help="frames of a --path")
    p.add_argument("--video", help="with --path: write this MP4 (extra 'capture': imageio-ffmpeg)")
    p.add_argument("--side-by-side", action="store_true", help="with --path: rgb | normal | depth in each frame")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--downscale", type=int, default=1)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--force", action="store_true", help="replace existing renders")
    p = sub.add_parser("eval", help="metrics on the test split -> RUN/metrics.json")
    p.add_argument("run")
    p.add_argument("--data", help="evaluate on this dataset (default: the training dataset)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--force", action="store_true", help="replace an existing RUN/metrics.json (and renders)")
    p.add_argument(
        "--mesh-only",
        action="store_true",
        help="recompute only the mesh metrics (after a new extract) and keep the others in metrics.json",
    )
    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    c = dsub.add_parser("check", help="summary of a dataset + a PNG of cameras and the unit sphere")
    c.add_argument("path", nargs="?", help="dataset folder (omit for the built-in scene)")
    c.add_argument("--out", help="PNG path (default ./data_check_<name>.png)")
    c = dsub.add_parser("process", help="photos folder or video -> COLMAP dataset (pycolmap SfM; extra 'capture')")
    c.add_argument("input", help="a folder of photos (jpg/png/tif/heic) or a video file (mp4/mov/...)")
    c.add_argument("--out", required=True, help="dataset folder to write (images/, images_2/, images_4/, sparse/0/)")
    c.add_argument("--frames", type=int, default=120, help="video: frames to keep, the sharpest of equal stretches")
    c.add_argument(
        "--matcher",
        choices=["auto", "exhaustive", "sequential"],
        default="auto",
        help="auto: exhaustive up to 120 images, sequential for videos and larger sets",
    )
    c.add_argument(
        "--masks",
        help="folder of object masks (white = object, matched by file stem): copied to "
        "masks/ and used to keep SfM features on the object (turntables); or 'auto': "
        "masks/ made after SfM (GrabCut seeded by the sparse points, no weights)",
    )
    c.add_argument("--max-image-size", type=int, default=2000, help="SIFT image size cap (px, longest side)")
    c.add_argument(
        "--min-registered",
        type=float,
        default=0.5,
        help="fail (naming the cause) when fewer than this fraction of the images register",
    )
    c.add_argument("--multi-camera", action="store_true", help="one camera per image size instead of one camera")
    c = dsub.add_parser(
        "masks",
        help="automatic object masks for a posed dataset (GrabCut seeded in 3D; extra "
        "'capture'), with the IoU against its own masks when it has some",
    )
    c.add_argument("path", help="dataset folder (any format lumisurf reads)")
    c.add_argument("--out", help="folder for <image stem>.png + overview.png (default DATASET/masks_auto)")
    c.add_argument("--format", default="auto")


def _add_stage2(sub) -> None:
    p = sub.add_parser(
        "material", help="Stage II: fit albedo / metallic / roughness + lighting on RUN/mesh.ply, export"
    )
    p.add_argument("run")
    p.add_argument("--steps", type=int)
    p.add_argument("--max-minutes", type=float, help="stop by wall clock")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-export", action="store_true", help="skip the OBJ/GLB/PLY/Mitsuba export")
    p.add_argument("--force", action="store_true", help="refit and replace RUN/material")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fit from RUN/material/ckpt")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="material.key=value overrides (the 'material.' prefix is optional)")
    p = sub.add_parser("relight", help="render a split of a Stage II run under a new HDR environment map")
    p.add_argument("run")
    p.add_argument("--env", required=True, help="Radiance .hdr lat-long map (top row = world +z)")
    p.add_argument("--split", default="test")
    p.add_argument("--spp", type=int, help="rays per pixel (default material.render_spp)")
    p.add_argument("--samples", type=int, help="light directions per hit (default material.render_light_samples)")
    p.add_argument("--out", help="output folder (default RUN/material/relight/<env name>)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--force", action="store_true", help="replace existing renders")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: A/B ablations of presets and config overrides")
    bsub = p.add_subparsers(dest="bench_cmd", required=True)
    a = bsub.add_parser("ablate", help="train each variant of SPEC.yaml under the same budget; csv/md/png")
    a.add_argument("spec", help="ablation spec (YAML; see lumisurf.bench.spec)")
    a.add_argument("--out", help="output folder (default benchmarks/results/ablate_<spec name>/)")
    a.add_argument("--minutes", type=float, help="training budget per variant (replaces the spec's)")
    a.add_argument("--only", nargs="+", metavar="NAME", help="run only these variants")
    a.add_argument("--force", action="store_true", help="overwrite earlier results in --out")
    a.add_argument("--no-progress", action="store_true")


def _add_batch(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="many scenes (a YAML spec): each a Ray task, resumed from its checkpoint when "
        "its worker is lost; summary.csv / summary.md",
    )
    p.add_argument("spec", help="batch spec (YAML; see lumisurf.jobs.batch.spec, benchmarks/specs/batch_example.yaml)")
    p.add_argument(
        "--out",
        help="output root (default: the spec's 'out', else runs/batch_<spec name>); a shared filesystem on a cluster",
    )
    p.add_argument(
        "--address",
        help="Ray cluster: auto (the one this machine belongs to) or ray://HOST:PORT; default: a local Ray instance",
    )
    p.add_argument(
        "--cpus-per-task", type=float, default=1, help="CPUs each scene's task reserves (and its torch threads)"
    )
    p.add_argument("--gpus-per-task", type=float, default=0, help="GPUs each scene's task reserves")
    p.add_argument("--local", action="store_true", help="no Ray: the scenes one after another in this process")
    p.add_argument("--no-progress", action="store_true")


def _add_vis(sub) -> None:
    p = sub.add_parser("vis", help="pictures of a run's internals (PNG)")
    vsub = p.add_subparsers(dest="vis_cmd", required=True)
    c = vsub.add_parser("seg-reprojection", help="one surface point's material assignment across views")
    c.add_argument("run")
    c.add_argument("--split", default="test")
    c.add_argument("--view", type=int, default=0, help="view the point is picked in")
    c.add_argument("--pixel", type=int, nargs=2, metavar=("COL", "ROW"), help="pixel at --downscale (default: centre)")
    c.add_argument("--downscale", type=int, default=2)
    c.add_argument("--out", help="PNG path (default RUN/vis/seg_reprojection.png)")
    c.add_argument("--device", choices=["auto", "cpu", "cuda"])
    c = vsub.add_parser("hash-features", help="per-level hash-grid feature magnitudes on slices")
    c.add_argument("run")
    c.add_argument("--resolution", type=int, default=128)
    c.add_argument("--out", help="PNG path (default RUN/vis/hash_features.png)")
    c.add_argument("--device", choices=["auto", "cpu", "cuda"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumisurf", description=DESCRIPTION)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_train(sub)
    _add_run_commands(sub)
    _add_stage2(sub)
    _add_vis(sub)
    _add_bench(sub)
    _add_batch(sub)
    return parser
