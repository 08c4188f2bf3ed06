"""SDF field throughput: forward + backward including the eikonal term, per backend x grid kernel x normals mode.

One iteration = ``sdf_and_gradient(points, create_graph=True)`` then
``loss = |sdf|.mean() + ((|grad| - 1)^2).mean() + 0 * feature.sum()`` and ``loss.backward()``, i.e. what a
training step costs the SDF field per sample. Fields are built from the presets' SDF configs:

* ``mlp``    : preset ``neus`` (8 x 128 MLP, PE 6, skip, weight norm; no hash grid so no kernel choice)
* ``hash``   : preset ``instant-nsr`` (2^19 table, res 16..2048) and preset ``lumisurf`` (2^17, 16..1024)
* ``hybrid`` : preset ``lumisurf``'s SDF config with ``backend=hybrid`` (MLP SDF + bounded hash residual)

The hash grid runs with ``implementation`` torch (pure-torch twin), warp (Warp kernels) and numba (the
multi-threaded CPU kernels).
``normals=autograd`` needs the twice-differentiable torch grid, so hash/hybrid x warp x autograd is skipped;
for ``mlp`` the analytic mode falls back to autograd (no grid Jacobian to use) and is timed anyway.

Usage: python benchmarks/field_throughput.py [--points 65536] [--repeats 3] [--max-seconds 10] [--device cpu]
       [--backends mlp hash hybrid] [--json out.json] [--baseline OLD_CHECKOUT] [--markdown out.md]
``--baseline DIR`` first times a checkout of older code (a git worktree) in a subprocess, then this code,
and prints before / after side by side. Prints a Markdown table: warm-up 1 iteration, then the median wall time
of ``--repeats`` iterations (fewer, at least one, once a combination's timed iterations passed
``--max-seconds``; column ``n`` says how many).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace

import torch

from lumisurf.encodings import hash_grid_warp

try:
    from lumisurf.encodings.hash_grid import kernel_status
except ImportError:  # a --baseline checkout older than the kernel registry: its rows carry no fallback note

    def kernel_status(impl: str, device_type: str) -> None:
        return None


from lumisurf.fields.base import build_sdf
from lumisurf.presets import preset_config

NORMALS = ("autograd", "finite_difference", "analytic")
# (backend, preset whose SDF config is used); hybrid reuses the lumisurf SDF config with backend=hybrid
FIELDS = (("mlp", "neus"), ("hash", "instant-nsr"), ("hash", "lumisurf"), ("hybrid", "lumisurf"))


@dataclass
class Row:
    backend: str
    preset: str
    impl: str
    normals: str
    ms: float | None = None
    n: int = 0  # timed iterations behind the median
    msps: float | None = None  # million samples per second
    note: str = ""


def sdf_config(backend: str, preset: str, impl: str, normals: str):
    """The preset's SDF config with the backend, grid implementation and normals mode set."""
    sdf = preset_config(preset).model.sdf
    grid = replace(sdf.grid, implementation=impl if impl != "-" else sdf.grid.implementation)
    return replace(sdf, backend=backend, normals=normals, grid=grid)


def combos(backends: list[str]) -> list[Row]:
    rows = []
    for backend, preset in FIELDS:
        if backend not in backends:
            continue
        for impl in ("-",) if backend == "mlp" else ("torch", "warp", "numba"):
            for normals in NORMALS:
                rows.append(Row(backend, preset, impl, normals))
    return rows


def skip_reason(row: Row) -> str | None:
    if row.impl in ("warp", "numba") and row.normals == "autograd":
        return "skipped: autograd normals need the twice-differentiable torch grid"
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _iteration(field, x: torch.Tensor) -> None:
    sdf, feat, grad = field.sdf_and_gradient(x, create_graph=True)  # [N], [N, F], [N, 3]
    loss = sdf.abs().mean() + ((grad.norm(dim=-1) - 1.0) ** 2).mean() + feat.sum() * 0.0
    loss.backward()


def time_field(field, x: torch.Tensor, repeats: int, max_seconds: float) -> tuple[float, int]:
    """Median wall milliseconds of one iteration after one warm-up iteration, and how many were timed.

    Stops early (after at least one timed iteration) once the timed iterations passed ``max_seconds``
    (0: never), so slow combinations on a small CPU do not dominate the run.
    """
    _iteration(field, x)  # warm-up: Warp kernel load/compile, allocator
    times: list[float] = []
    for _ in range(repeats):
        if times and max_seconds > 0 and sum(times) >= max_seconds * 1e3:
            break
        field.zero_grad(set_to_none=True)
        _sync(x.device)
        t0 = time.perf_counter()
        _iteration(field, x)
        _sync(x.device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), len(times)


def measure(row: Row, x: torch.Tensor, repeats: int, max_seconds: float, device: torch.device) -> Row:
    reason = skip_reason(row)
    if reason:
        row.note = reason
        return row
    try:
        field = build_sdf(sdf_config(row.backend, row.preset, row.impl, row.normals)).to(device)
    except Exception as exc:  # noqa: BLE001 - a --baseline checkout without this implementation
        row.note = f"not built by this code: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        return row
    row.ms, row.n = time_field(field, x, repeats, max_seconds)
    row.msps = x.shape[0] / (row.ms / 1e3) / 1e6
    if row.backend == "mlp" and row.normals == "analytic":
        row.note = "mlp has no analytic path: same as autograd"
    if row.impl in ("warp", "numba") and kernel_status(row.impl, device.type) is not None:
        row.note = f"{row.impl} unavailable, ran the torch grid ({kernel_status(row.impl, device.type)})"
    return row


def markdown(rows: list[Row]) -> str:
    lines = [
        "| backend | preset | impl | normals | ms/iter | M samples/s | n | note |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        ms = "-" if r.ms is None else f"{r.ms:.1f}"
        sps = "-" if r.msps is None else f"{r.msps:.4f}"
        lines.append(f"| {r.backend} | {r.preset} | {r.impl} | {r.normals} | {ms} | {sps} | {r.n or '-'} | {r.note} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=65536, help="points per iteration (default 65536)")
    ap.add_argument("--repeats", type=int, default=3, help="timed iterations; the median is reported (default 3)")
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=10.0,
        help="per combination: stop timing once the timed iterations took this long "
        "(at least one; 0 = always --repeats). Default 10",
    )
    ap.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, ...")
    ap.add_argument("--backends", nargs="+", default=["mlp", "hash", "hybrid"], choices=["mlp", "hash", "hybrid"])
    ap.add_argument(
        "--warp-cpu-threads", type=int, default=1, help="concurrent Warp CPU launches (level groups); default 1"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument(
        "--baseline",
        default=None,
        help="a checkout of older code (e.g. a git worktree): time it too, in a subprocess right "
        "before this code, and print both side by side (same run, same machine)",
    )
    ap.add_argument("--markdown", default=None, help="also write the table(s) to this Markdown file")
    return ap.parse_args(argv)


def run_baseline(args, path: str) -> list[dict]:
    """The same measurement with ``lumisurf`` imported from the checkout ``path``; its rows as dicts."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--points",
            str(args.points),
            "--repeats",
            str(args.repeats),
            "--max-seconds",
            str(args.max_seconds),
            "--device",
            args.device,
            "--backends",
            *args.backends,
            "--warp-cpu-threads",
            str(args.warp_cpu_threads),
            "--seed",
            str(args.seed),
            "--json",
            out,
        ]
        env = {**os.environ, "PYTHONPATH": os.path.abspath(path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        subprocess.run(cmd, env=env, cwd=path, check=True)
        with open(out) as f:
            return json.load(f)["rows"]


def compare_markdown(base: list[dict], rows: list[Row]) -> str:
    lines = [
        "| backend | preset | impl | normals | before ms | after ms | before M/s | after M/s | speed-up |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    by_key = {(b["backend"], b["preset"], b["impl"], b["normals"]): b for b in base}
    for r in rows:
        b = by_key.get((r.backend, r.preset, r.impl, r.normals), {})
        bms, ams = b.get("ms"), r.ms
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        speed = "-" if bms is None or ams is None else f"{bms / ams:.2f}x"
        lines.append(
            f"| {r.backend} | {r.preset} | {r.impl} | {r.normals} | {fmt(bms, '.1f')} | {fmt(ams, '.1f')} | "
            f"{fmt(b.get('msps'), '.4f')} | {fmt(r.msps, '.4f')} | {speed} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    base = run_baseline(args, args.baseline) if args.baseline else None
    device = torch.device(args.device)
    hash_grid_warp.set_cpu_threads(args.warp_cpu_threads)
    torch.manual_seed(args.seed)
    x = torch.rand(args.points, 3, generator=torch.Generator().manual_seed(args.seed)).mul(1.8).sub(0.9).to(device)
    header = (
        f"points={args.points} repeats={args.repeats} device={device} torch={torch.__version__} "
        f"torch_threads={torch.get_num_threads()} warp_cpu_threads={args.warp_cpu_threads} "
        f"cpu={platform.processor() or platform.machine()}"
    )
    print(header, flush=True)
    rows = []
    t_start = time.perf_counter()
    for row in combos(args.backends):
        rows.append(measure(row, x, args.repeats, args.max_seconds, device))
        print(
            f"  {row.backend:6s} {row.preset:11s} {row.impl:5s} {row.normals:17s} "
            f"{'-' if row.ms is None else f'{row.ms:9.1f} ms'}",
            flush=True,
        )
    text = (
        markdown(rows)
        if base is None
        else (f"after: this checkout; before: {args.baseline}\n\n" + compare_markdown(base, rows))
    )
    print(f"\n{text}\n\ntotal {time.perf_counter() - t_start:.0f} s")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{header}\n\n{text}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"setup": header, "rows": [r.__dict__ for r in rows]}, f, indent=2)


if __name__ == "__main__":
    main()
