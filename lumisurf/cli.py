"""The one command line: ``lumisurf train | extract | render | eval | material | relight | data | vis | bench |
view | batch``.

Parsing only: each sub-command calls a job in :mod:`lumisurf.jobs` (or :mod:`lumisurf.bench`), imported when
the command runs so that ``lumisurf --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from lumisurf.cli_parser import build_parser
from lumisurf.errors import DataWarning, LumisurfError


def _sigterm_as_interrupt() -> None:
    """A polite kill (SIGTERM) saves the checkpoint like Ctrl-C does."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


def _cmd_train(a) -> None:
    from lumisurf.jobs.train import build_train_config, launch_ranks, train_job

    cfg = build_train_config(a.data, a.preset, a.max_steps, a.max_minutes, a.device, a.seed, a.overrides)
    if a.nproc != 1 and "WORLD_SIZE" not in os.environ:  # the launcher; each rank runs the lines below
        launch_ranks(cfg, a.out, a.resume, a.force, a.nproc, a.argv)
        return
    _sigterm_as_interrupt()
    summary = train_job(
        cfg,
        a.out,
        resume=a.resume,
        force=a.force,
        progress=not a.no_progress,
        max_steps=a.max_steps,
        max_minutes=a.max_minutes,
        viewer=(a.host, a.port) if a.viewer else None,
    )
    if summary is not None:  # rank 0 (the other ranks of a data-parallel run say nothing)
        print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}))


def _cmd_run(a) -> None:
    from lumisurf.jobs.restore import load_run

    loaded = load_run(Path(a.run), a.device)
    if a.cmd == "extract":
        from lumisurf.jobs.extract import extract_run

        if a.keep_unseen:
            loaded.cfg.eval.fill_unseen = False
        if a.voxels is not None:
            from lumisurf.jobs.extract import field_to_voxels

            print(f"wrote {field_to_voxels(loaded, a.voxels)}")
            return
        print(f"wrote {extract_run(loaded, a.resolution, force=a.force, formats=tuple(a.format))}")
    elif a.cmd == "render":
        from lumisurf.data.load import load_scene_normalized_as
        from lumisurf.jobs.render import render_split

        scene = load_scene_normalized_as(loaded.cfg.data, loaded.normalization)
        if a.path:
            from lumisurf.jobs.render import render_path

            out = render_path(
                loaded, scene, a.path, a.frames, Path(a.video) if a.video else None, a.side_by_side, a.downscale, a.fps
            )
            print(f"wrote {out}" + (f" and {a.video}" if a.video else ""))
            return
        for _ in render_split(loaded, scene, a.split, a.downscale, force=a.force):
            pass
        print(f"wrote {loaded.run.renders(a.split)}")
    else:
        from lumisurf.jobs.evaluate import evaluate_run, format_table

        print(format_table(evaluate_run(loaded, a.data, force=a.force, mesh_only=a.mesh_only)))
        print(f"wrote {loaded.run.metrics_path}")


def _cmd_view(a) -> None:
    from lumisurf.jobs.viewer.server import view_run

    view_run(Path(a.run), a.host, a.port, a.device, a.env)


def _cmd_material(a) -> None:
    from lumisurf.jobs.material import material_job

    summary = material_job(
        Path(a.run),
        a.overrides,
        a.steps,
        a.max_minutes,
        a.device,
        a.force,
        progress=not a.no_progress,
        export=not a.no_export,
        resume=a.resume,
    )
    print(json.dumps(summary, default=str))


def _cmd_relight(a) -> None:
    from lumisurf.jobs.relight import relight_job

    print(f"wrote {relight_job(Path(a.run), Path(a.env), a.split, a.spp, a.samples, a.out, a.device, a.force)}")


def _cmd_bench(a) -> None:
    from lumisurf.bench.ablate import run_ablation

    run_ablation(Path(a.spec), Path(a.out) if a.out else None, a.minutes, a.only, a.force, progress=not a.no_progress)


def _cmd_batch(a) -> None:
    from lumisurf.jobs.batch.runner import run_batch

    run_batch(
        Path(a.spec),
        Path(a.out) if a.out else None,
        a.address,
        a.cpus_per_task,
        a.gpus_per_task,
        a.local,
        progress=not a.no_progress,
    )


def _cmd_vis(a) -> None:
    from lumisurf.jobs import vis_tools
    from lumisurf.jobs.restore import load_run

    loaded = load_run(Path(a.run), a.device)
    if a.vis_cmd == "hash-features":
        out = Path(a.out) if a.out else loaded.run.root / "vis" / "hash_features.png"
        print(f"wrote {vis_tools.hash_features(loaded, out, a.resolution)}")
        return
    from lumisurf.data.load import load_scene_normalized_as

    scene = load_scene_normalized_as(loaded.cfg.data, loaded.normalization)
    out = Path(a.out) if a.out else loaded.run.root / "vis" / "seg_reprojection.png"
    pixel = tuple(a.pixel) if a.pixel else None
    print(f"wrote {vis_tools.seg_reprojection(loaded, scene, out, a.split, a.view, pixel, a.downscale)}")


def _cmd_data(a) -> None:
    if a.data_cmd == "process":
        from lumisurf.data.capture.process import ProcessOptions, process_capture

        opts = ProcessOptions(
            frames=a.frames,
            matcher=a.matcher,
            masks=a.masks,
            max_image_size=a.max_image_size,
            min_registered=a.min_registered,
            single_camera=not a.multi_camera,
        )
        process_capture(Path(a.input), Path(a.out), opts)
        print(f"wrote {a.out}; next: lumisurf data check {a.out}; lumisurf train --data {a.out}")
        return
    if a.data_cmd == "masks":
        from lumisurf.data.capture.dataset_masks import dataset_auto_masks, write_masks

        out = Path(a.out) if a.out else Path(a.path) / "masks_auto"
        masks, files, size, given = dataset_auto_masks(Path(a.path), a.format)
        rep = write_masks(masks, files, size, out, given)
        print("\n".join(rep.lines()))
        print(f"wrote {out}")
        return
    from lumisurf.data.check import check_dataset

    name = Path(a.path).resolve().name if a.path else "synthetic"
    out = Path(a.out) if a.out else Path(f"data_check_{name}.png")
    print(check_dataset(Path(a.path) if a.path else None, out))
    print(f"wrote {out}")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Data warnings read like the CLI's errors (one line, no source excerpt); others as Python prints them."""
    if issubclass(category, DataWarning):
        return f"lumisurf: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may come after options (argparse only takes them before)
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {
        "train": _cmd_train,
        "extract": _cmd_run,
        "render": _cmd_run,
        "eval": _cmd_run,
        "data": _cmd_data,
        "material": _cmd_material,
        "relight": _cmd_relight,
        "vis": _cmd_vis,
        "bench": _cmd_bench,
        "view": _cmd_view,
        "batch": _cmd_batch,
    }
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc re-runs the command line per rank
    try:
        handlers[args.cmd](args)
    except LumisurfError as exc:
        if args.debug:
            raise
        rank = f" (rank {os.environ['RANK']})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"lumisurf: error{rank}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lumisurf: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
