"""Time hash grid encoding + a 2x64 MLP, forward+backward, torch reference vs Warp kernels.

Usage: python benchmarks/hash_grid_speed.py [--points 65536] [--repeats 3] [--device cpu] [--cpu-threads 1]
Prints the median wall ms per step (process CPU ms beside it, all threads) for a plain
forward+backward and for an SDF-style step using forward_with_grad (analytic normal + eikonal loss).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lumisurf.encodings import HashGrid, HashGridConfig, hash_grid_warp


def _mlp(n_in: int, device: torch.device) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_plain(grid, mlp, x):
    out = mlp(grid(x))
    out.sum().backward()


def _step_with_grad(grid, mlp, x):
    """SDF-style step: normal = d mlp / d feat (autograd through the MLP only) . dfeat_dx, eikonal loss."""
    feat, jac = grid.forward_with_grad(x)  # [N, D], [N, D, 3]
    sdf = mlp(feat)  # [N, 1]
    (dsdf_dfeat,) = torch.autograd.grad(sdf.sum(), feat, create_graph=True)  # [N, D]
    normal = torch.einsum("nd,ndk->nk", dsdf_dfeat, jac)  # [N, 3]
    loss = sdf.abs().mean() + ((normal.norm(dim=-1) - 1.0) ** 2).mean()
    loss.backward()


def _time(step, grid, mlp, x, repeats: int, warmup: bool) -> tuple[float, float]:
    """Median wall ms and median process CPU ms (all threads) per step."""
    if warmup:
        step(grid, mlp, x)  # Warp compile/load happens here
    walls, cpus = [], []
    for _ in range(repeats):
        grid.zero_grad(set_to_none=True)
        mlp.zero_grad(set_to_none=True)
        _sync(x.device)
        t0, c0 = time.perf_counter(), time.process_time()
        step(grid, mlp, x)
        _sync(x.device)
        walls.append((time.perf_counter() - t0) * 1e3)
        cpus.append((time.process_time() - c0) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--log2-table-size", type=int, default=19)
    ap.add_argument("--cpu-threads", type=int, default=1, help="concurrent Warp CPU launches (level groups)")
    args = ap.parse_args()
    hash_grid_warp.set_cpu_threads(args.cpu_threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = (torch.rand(args.points, 3, device=device) * 2 - 1).requires_grad_(False)
    print(f"points={args.points} device={device} torch_threads={torch.get_num_threads()} "
          f"warp_cpu_threads={args.cpu_threads} L=16 F=2 T={args.log2_table_size}")
    for impl in ("torch", "warp"):
        cfg = HashGridConfig(log2_table_size=args.log2_table_size, implementation=impl)
        grid = HashGrid(cfg).to(device)
        mlp = _mlp(grid.output_dim, device)
        # the slow torch twin gets one run less and no warm-up to keep the script under a minute
        reps, warm = (max(1, args.repeats - 1), False) if impl == "torch" else (args.repeats, True)
        plain = _time(_step_plain, grid, mlp, x, reps, warm)
        withg = _time(_step_with_grad, grid, mlp, x, reps, warm)
        print(f"{impl:>5}: forward+backward {plain[0]:7.1f} ms (cpu {plain[1]:7.1f}) | "
              f"forward_with_grad+backward {withg[0]:7.1f} ms (cpu {withg[1]:7.1f})")


if __name__ == "__main__":
    main()
