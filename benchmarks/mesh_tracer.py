"""Rays/s of MeshTracer (first hit and shadow queries) for the Embree and brute-force torch backends.

Camera rays: from a sphere of radius 3.5 towards points near the origin (most hit the object).
Shadow rays: from the camera rays' hit points (offset along the normal) in random upper-hemisphere
directions, t_max = inf. The torch backend runs on a small subset of the rays (it tests every face).

    python benchmarks/mesh_tracer.py                       # glossy_bunny gt_mesh.ply, Markdown table
    python benchmarks/mesh_tracer.py --mesh some.ply --rays 1000000 --torch-rays 512
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import trimesh

from lumisurf.renderers.mesh_tracer import HAS_EMBREE, MeshTracer

DEFAULT_MESH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glossy_bunny" / "gt_mesh.ply"


def camera_rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g)
    o = 3.5 * o / o.norm(dim=-1, keepdim=True)
    d = 0.3 * torch.randn(n, 3, generator=g) - o
    return o, d / d.norm(dim=-1, keepdim=True)


def shadow_rays(tracer: MeshTracer, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    o, d = camera_rays(4 * n, seed)
    h = tracer.intersect(o, d)
    p, nrm = h.points[h.hit][:n], h.geo_normals[h.hit][:n]
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(p.shape[0], 3, generator=g)
    w = w / w.norm(dim=-1, keepdim=True)
    w = torch.where((w * nrm).sum(-1, keepdim=True) < 0, -w, w)
    return p + 1e-4 * nrm, w


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (Embree builds its BVH lazily on the first query)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", type=Path, default=DEFAULT_MESH)
    ap.add_argument("--rays", type=int, default=262144, help="rays per Embree query")
    ap.add_argument("--torch-rays", type=int, default=1024, help="rays per torch query")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mesh = trimesh.load(args.mesh, process=False, force="mesh")
    print(
        f"mesh {args.mesh} : {len(mesh.vertices)} vertices, {len(mesh.faces)} faces; "
        f"torch threads {torch.get_num_threads()}\n"
    )
    print("| backend | query | rays | hit fraction | seconds | rays/s |\n|---|---|---|---|---|---|")
    backends = (["embree"] if HAS_EMBREE else []) + ["torch"]
    t0 = time.perf_counter()
    ref = MeshTracer(mesh.vertices, mesh.faces, backend=backends[0])
    build = time.perf_counter() - t0
    for name in backends:
        tracer = ref if name == backends[0] else MeshTracer(mesh.vertices, mesh.faces, backend=name)
        n = args.rays if name == "embree" else args.torch_rays
        o, d = camera_rays(n)
        so, sd = shadow_rays(ref, n)
        frac = tracer.intersect(o, d).hit.float().mean().item()
        occ = tracer.occluded(so, sd).float().mean().item()
        for query, fn, k, f in (
            ("intersect", lambda: tracer.intersect(o, d), n, frac),  # noqa: B023 - timed in this iteration
            ("occluded", lambda: tracer.occluded(so, sd), so.shape[0], occ),  # noqa: B023 - timed in this iteration
        ):
            sec = timed(fn, args.repeats if name == "embree" else 1)
            print(f"| {name} | {query} | {k} | {f:.3f} | {sec:.3f} | {k / sec:,.0f} |")
    print(f"\n(MeshTracer construction incl. vertex normals: {build:.3f} s)")


if __name__ == "__main__":
    main()
