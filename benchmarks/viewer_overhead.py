"""What `train --viewer` costs a training run: steps per second without the viewer, with the viewer and no browser,
and with a headless chromium on the page (Playwright; on the same machine, so its WebGL drawing shares the CPU).

Each configuration trains the built-in scene for ``--steps`` steps from the same seed; the configurations
alternate over ``--repeats`` rounds (a drifting machine hits all of them alike). Prints one row per run and the
median per configuration with its slowdown against no viewer.

    python benchmarks/viewer_overhead.py [--steps 150] [--repeats 2] [--preset lumisurf]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from lumisurf.config import apply_overrides
from lumisurf.data.load import load_config_scene
from lumisurf.kinds import train
from lumisurf.presets import preset_config
from lumisurf.train.run_dir import RunDir

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_cpu_seconds() -> float:
    """User + system CPU seconds of every running chromium process so far (Linux /proc)."""
    import os

    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"chromium" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_once(kind: str, cfg, scene) -> dict:
    """Training ms per step of one run, mesh previews sent, the training thread's time on the page and the
    browser's CPU time (both per second of training)."""
    from lumisurf.jobs.viewer.live import TrainingViewer

    root = Path(tempfile.mkdtemp(prefix="viewer_overhead_"))
    run = RunDir(root / "run")
    run.prepare_new(cfg, force=False, resume=False)
    live = TrainingViewer(scene, port=0) if kind != "none" else None
    hooks = (live.on_step,) if live else ()
    out = {}
    try:
        if kind == "browser":
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(f"http://127.0.0.1:{live.server.get_port()}/")
                while not live.server.get_clients():
                    time.sleep(0.1)
                time.sleep(2.0)
                cpu0 = chromium_cpu_seconds()
                worker = threading.Thread(
                    target=lambda: out.update(r=train(cfg, run, progress=False, scene=scene, hooks=hooks))
                )
                worker.start()
                worker.join()
                out["browser_cpu"] = chromium_cpu_seconds() - cpu0
                browser.close()
        else:
            out["r"] = train(cfg, run, progress=False, scene=scene, hooks=hooks)
    finally:
        if live:
            live.stop()
        shutil.rmtree(root, ignore_errors=True)
    r = out["r"]
    return {
        "ms": 1000 * r.train_seconds / r.steps,
        "meshes": live.meshes_sent if live else 0,
        "hook": (live.hook_seconds if live else 0.0) / r.train_seconds,
        "browser": out.get("browser_cpu", 0.0) / r.train_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--preset", default="lumisurf")
    a = ap.parse_args()
    cfg = apply_overrides(
        preset_config(a.preset),
        [f"train.max_steps={a.steps}", "train.val_every=0", "train.finalize=false", "train.device=cpu", "train.seed=0"],
    )
    scene = load_config_scene(cfg.data)
    kinds = {"none": "none", "viewer, no browser": "viewer", "browser": "browser"}  # label -> run_once kind
    per = {k: [] for k in kinds}
    print(
        "| round | configuration | ms / step | mesh previews sent | training thread on the page | browser CPU "
        "(cores) |\n|---:|---|---:|---:|---:|---:|"
    )
    for rnd in range(a.repeats):
        for kind in kinds:
            r = run_once(kinds[kind], cfg, scene)
            per[kind].append(r["ms"] / 1000)
            print(
                f"| {rnd} | {kind} | {r['ms']:.1f} | {r['meshes']} | {100 * r['hook']:.1f} % | {r['browser']:.2f} |",
                flush=True,
            )
    base = float(np.median(per["none"]))
    print(f"\n{a.steps} steps of preset {a.preset} on the built-in scene, seed 0, {a.repeats} rounds\n")
    print("| configuration | median ms / step | min-max | slowdown vs none |\n|---|---:|---|---:|")
    for kind in kinds:
        v = np.asarray(per[kind]) * 1000
        print(
            f"| {kind} | {np.median(v):.1f} | {v.min():.1f}-{v.max():.1f} | "
            f"{100 * (np.median(v) / 1000 / base - 1):+.1f} % |"
        )


if __name__ == "__main__":
    main()
