"""The hash grid kernels alone: forward with the Jacobian, and backward, per kernel, thread count and level layout.

What a training step asks of the grid: ``forward_with_grad`` (features and dfeat_dx) at the render samples, then
the backward with upstream gradients on both (the eikonal term's). Each row is the median wall ms over
``--repeats`` calls after one warm-up call (compile/load), for

* kernels: ``torch`` (the twin; one run, it is slow), ``warp`` (1 launch, or ``--warp-groups`` concurrent level
  groups), ``numba`` at 1 and 2 threads;
* layouts: 16 levels x 2 features (the default, 2^17 rows a level) and 8 x 4 (half the levels, the same table
  bytes: 2^16 rows of 4 floats, fewer cache lines per point);
* points: ``rays`` (64 samples along each of N/64 rays through a sphere of radius 0.5, half of them within
  0.05 of its surface, as a training step's samples are) or ``uniform`` in [-0.9, 0.9]^3 (no locality).

    python benchmarks/hash_grid_speed.py [--points 65536] [--repeats 7] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lumisurf.encodings import HashGrid, HashGridConfig, hash_grid_numba, hash_grid_warp
from lumisurf.encodings.hash_grid import kernel_status

LAYOUTS = {
    "16x2": dict(n_levels=16, n_features=2, log2_table_size=17),
    "8x4": dict(n_levels=8, n_features=4, log2_table_size=16),
}


def ray_points(n: int, gen: torch.Generator) -> torch.Tensor:
    """n points: 64 samples along each of n/64 rays from a camera sphere of radius 3 through a sphere of radius 0.5,
    stratified over the chord +-0.3 around the first hit and, for half of them, within 0.05 of it."""
    n_rays = max(1, n // 64)
    eye = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=gen), dim=-1) * 3.0
    target = (torch.rand(n_rays, 3, generator=gen) - 0.5) * 0.6
    d = torch.nn.functional.normalize(target - eye, dim=-1)
    b = (eye * d).sum(-1)
    disc = (b * b - (eye * eye).sum(-1) + 0.25).clamp_min(0.0)
    t_hit = -b - disc.sqrt()
    wide = (torch.rand(n_rays, 32, generator=gen) - 0.5) * 0.6
    band = (torch.rand(n_rays, 32, generator=gen) - 0.5) * 0.1
    t = (t_hit[:, None] + torch.cat([wide, band], -1)).sort(-1).values
    return (eye[:, None] + d[:, None] * t[..., None]).reshape(-1, 3)[:n].contiguous()


def time_kernel(grid: HashGrid, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median ms of forward_with_grad and of its backward (upstream on features and Jacobian)."""
    gen = torch.Generator().manual_seed(1)
    up_f = torch.randn(x.shape[0], grid.output_dim, generator=gen)
    up_j = torch.randn(x.shape[0], grid.output_dim, 3, generator=gen)
    fwd, bwd = [], []
    for i in range(repeats + 1):
        grid.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        feat, jac = grid.forward_with_grad(x)
        t1 = time.perf_counter()
        torch.autograd.backward([feat, jac], [up_f, up_j])
        t2 = time.perf_counter()
        if i > 0:  # the first call compiles / loads
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    return statistics.median(fwd), statistics.median(bwd)


def variants(warp_groups: int) -> list[tuple[str, str, int]]:
    """(label, implementation, threads) rows."""
    rows = [("torch twin", "torch", 0), ("warp, 1 launch", "warp", 1)]
    if warp_groups > 1:
        rows.append((f"warp, {warp_groups} level groups", "warp", warp_groups))
    rows += [("numba, 1 thread", "numba", 1), ("numba, 2 threads", "numba", 2)]
    return [r for r in rows if r[1] == "torch" or kernel_status(r[1], "cpu") is None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warp-groups", type=int, default=2, help="also time Warp with this many concurrent launches")
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    points = {"rays": ray_points(args.points, gen), "uniform": (torch.rand(args.points, 3, generator=gen) * 1.8 - 0.9)}
    lines = [
        f"points={args.points}, repeats={args.repeats} (median), torch_threads={torch.get_num_threads()}, "
        f"fwd = forward_with_grad, bwd = its backward",
        "",
        "| kernel | layout | points | fwd ms | bwd ms | fwd+bwd ms | speed-up vs warp, 1 launch |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for layout, kw in LAYOUTS.items():
        for pname, x in points.items():
            base = None
            for label, impl, threads in variants(args.warp_groups):
                hash_grid_warp.set_cpu_threads(threads if impl == "warp" else 1)
                hash_grid_numba.set_cpu_threads(threads if impl == "numba" else None)
                torch.manual_seed(0)
                grid = HashGrid(HashGridConfig(**kw, base_resolution=16, max_resolution=1024, implementation=impl))
                with torch.no_grad():
                    grid.params.uniform_(-0.1, 0.1)
                f, b = time_kernel(grid, x, 1 if impl == "torch" else args.repeats)
                if impl == "warp" and threads == 1:
                    base = f + b
                speed = "" if base is None else f"{base / (f + b):.2f}x"
                lines.append(f"| {label} | {layout} | {pname} | {f:.1f} | {b:.1f} | {f + b:.1f} | {speed} |")
                print(lines[-1], flush=True)
    hash_grid_warp.set_cpu_threads(1)
    hash_grid_numba.set_cpu_threads(None)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
