"""Time hash grid encoding + a 2x64 MLP, forward+backward, torch reference vs Warp kernels.

Usage: python benchmarks/hash_grid_speed.py [--points 65536] [--repeats 5] [--device cpu]
Prints wall ms per iteration (median; process CPU ms beside it, which is
less sensitive to other load on a shared machine) for: plain forward+backward, and forward_with_grad with a loss
on both features and dfeat_dx (eikonal-style), for each implementation.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lumisurf.encodings import HashGrid, HashGridConfig


def _mlp(n_in: int, device: torch.device) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_plain(grid, mlp, x):
    out = mlp(grid(x))
    out.sum().backward()


def _step_with_grad(grid, mlp, x):
    feat, jac = grid.forward_with_grad(x)  # [N, D], [N, D, 3]
    out = mlp(feat)
    # eikonal-style term on the encoding Jacobian projected by a fixed random direction of features
    proj = torch.einsum("ndk,d->nk", jac, grid_dir(grid.output_dim, x.device))
    loss = out.sum() + ((proj.norm(dim=-1) - 1.0) ** 2).mean()
    loss.backward()


_DIRS: dict = {}


def grid_dir(d: int, device: torch.device) -> torch.Tensor:
    key = (d, str(device))
    if key not in _DIRS:
        _DIRS[key] = torch.randn(d, generator=torch.Generator().manual_seed(0)).to(device)
    return _DIRS[key]


def _time(step, grid, mlp, x, repeats: int) -> tuple[float, float]:
    """Median wall ms and median process CPU ms (all threads) per step."""
    step(grid, mlp, x)  # warm-up (Warp compile/load happens here)
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
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = (torch.rand(args.points, 3, device=device) * 2 - 1).requires_grad_(False)
    print(f"points={args.points} device={device} threads={torch.get_num_threads()} L=16 F=2 T={args.log2_table_size}")
    for impl in ("torch", "warp"):
        cfg = HashGridConfig(log2_table_size=args.log2_table_size, implementation=impl)
        grid = HashGrid(cfg).to(device)
        mlp = _mlp(grid.output_dim, device)
        plain = _time(_step_plain, grid, mlp, x, args.repeats)
        withg = _time(_step_with_grad, grid, mlp, x, args.repeats)
        print(f"{impl:>5}: forward+backward {plain[0]:7.1f} ms (cpu {plain[1]:7.1f}) | "
              f"forward_with_grad+backward {withg[0]:7.1f} ms (cpu {withg[1]:7.1f})")


if __name__ == "__main__":
    main()
