#!/usr/bin/env python
"""Seeded synthetic glossy scenes with ground truth, rendered with Mitsuba 3 (``scalar_rgb``) in the
Blender / NeRF-synthetic format of ../shared/data/glossy_bunny and two_materials (see that README).

    python benchmarks/scenes/make_scene.py --kind glossy --seed 3 --out /tmp/glossy_3
    python benchmarks/scenes/make_scene.py --kind two_material --seed 0 --out DIR --res 64 --spp 8 \\
        --n-train 8 --n-test 4 --n-relight 4
    python benchmarks/scenes/make_scene.py --suite glossy --count 8 --out ROOT     # ROOT/glossy_000..007
    python benchmarks/scenes/make_scene.py --list --suite two_material --count 8   # recipes, no rendering
    python benchmarks/scenes/make_scene.py --verify DIR                            # checks from the files

The same (kind, seed) always gives the same scene: shape, materials, env maps, cameras (numpy
``default_rng(seed)``, the shared scenes' layout) and per-view render seeds. A folder holding a complete
scene made with the same parameters is skipped unless ``--force``. From Python:
``make_scene(kind, seed, out, res=200, spp=64) -> Path``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenegen import encode as E  # noqa: E402
from scenegen.cameras import sample_cameras, write_transforms  # noqa: E402
from scenegen.recipe import KINDS, describe, make_recipe  # noqa: E402
from scenegen.render import MitsubaMissing  # noqa: E402

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SPLIT_SEED = {"train": 0, "test": 100000, "relight": 200000}


def scene_params(res=200, spp=64, n_train=64, n_test=16, n_relight=16) -> dict:
    if min(res, spp, n_train, n_test) < 1 or not 0 <= n_relight <= n_test:
        raise ValueError("need res, spp, n_train, n_test >= 1 and 0 <= n_relight <= n_test")
    return {
        "res": int(res),
        "spp": int(spp),
        "n_train": int(n_train),
        "n_test": int(n_test),
        "n_relight": int(n_relight),
    }


def expected_files(kind: str, seed: int, params: dict) -> list[str]:
    two = kind == "two_material"
    files = ["gt_mesh.ply", "transforms_train.json", "transforms_test.json"]
    files += ["gt_mesh_face_matid.npy"] if two else []
    files += ["transforms_relight.json"] if params["n_relight"] else []
    recipe = make_recipe(kind, seed)
    files.append(f"envmaps/{recipe['env_map']}")
    files += [f"envmaps/{recipe['relight_env_map']}"] if params["n_relight"] else []
    for split, n, gt in (
        ("train", params["n_train"], True),
        ("test", params["n_test"], True),
        ("relight", params["n_relight"], False),
    ):
        for i in range(n):
            files += E.view_files(split, i, gt, two)
    return files


def scene_state(out: Path, kind: str, seed: int, params: dict) -> str:
    """'missing' | 'complete' (same kind/seed/params, all files) | 'other' (anything else there)."""
    if not out.exists():
        return "missing"
    try:
        gen = json.loads((out / "meta.json").read_text())["generator"]
    except (OSError, ValueError, KeyError):
        return "other"
    same = gen.get("kind") == kind and gen.get("seed") == seed and gen.get("params") == params
    return "complete" if same and all((out / f).is_file() for f in expected_files(kind, seed, params)) else "other"


def _render_split(
    scene, geo, recipe, out: Path, split: str, cams: np.ndarray, params: dict, gt: bool, progress: bool
) -> float:
    from scenegen import render as R
    from tqdm import tqdm

    t0, two = time.time(), recipe["kind"] == "two_material"
    name = out.name.removesuffix(".partial")
    for i in tqdm(
        range(len(cams)), desc=f"{name} {split}", unit="view", disable=not progress, mininterval=0, file=sys.stdout
    ):
        stem = out / split / f"r_{i}"
        img = R.render_rgba(scene, cams[i], params["res"], params["spp"], SPLIT_SEED[split] + i)
        E.write_rgba(stem.with_suffix(".png"), img)
        if gt:
            E.write_gt(stem, R.gt_maps(scene, geo, recipe["materials"], cams[i], params["res"]), two)
    return round(time.time() - t0, 1)


def _write_static(tmp: Path, recipe: dict, geo, cams: dict, data_root: Path) -> None:
    """GT mesh (+ face ids), transforms files and copies of the env maps (lumisurf looks env_map names
    up in <scene>/envmaps/)."""
    import trimesh

    trimesh.Trimesh(geo.gt_V, geo.gt_F, process=False).export(tmp / "gt_mesh.ply")
    if recipe["kind"] == "two_material":
        np.save(tmp / "gt_mesh_face_matid.npy", geo.gt_matid.astype(np.uint8))
    (tmp / "envmaps").mkdir()
    for split, c2w in cams.items():
        if len(c2w):
            (tmp / split).mkdir()
            env = recipe["relight_env_map" if split == "relight" else "env_map"]
            write_transforms(tmp / f"transforms_{split}.json", split, c2w, env)
            if not (tmp / "envmaps" / env).is_file():
                shutil.copyfile(data_root / "envmaps" / env, tmp / "envmaps" / env)


def _write_scene(tmp: Path, kind: str, seed: int, params: dict, data_root: Path, progress: bool, verify: bool) -> None:
    from scenegen import geometry
    from scenegen import render as R
    from scenegen.meta import build_meta

    mi = R.mitsuba()
    recipe = make_recipe(kind, seed)
    geo = geometry.build(recipe, data_root)
    cams = dict(zip(("train", "test"), sample_cameras(seed, params["n_train"], params["n_test"])))
    cams["relight"] = cams["test"][: params["n_relight"]]
    tmp.mkdir(parents=True)
    _write_static(tmp, recipe, geo, cams, data_root)
    timings, scene = {}, None
    for split in ("train", "test", "relight"):
        if len(cams[split]) and split != "test":  # test shares the training scene
            env = recipe["relight_env_map" if split == "relight" else "env_map"]
            scene = R.build_scene(geo, recipe["materials"], tmp / "envmaps" / env)
        if len(cams[split]):
            timings[split] = _render_split(
                scene, geo, recipe, tmp, split, cams[split], params, split != "relight", progress
            )
    checks = None
    if verify:
        from scenegen.verify import DESCRIPTION, verify_scene

        checks = {"independent_from_files": {"result": verify_scene(tmp), "description": DESCRIPTION}}
    renderer = f"Mitsuba {mi.__version__} (variant {R.VARIANT}), path tracer"
    meta = build_meta(
        tmp.name.removesuffix(".partial"),
        recipe,
        params,
        geo.mesh_to_world,
        renderer,
        timings,
        checks,
        kind == "two_material",
    )
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def make_scene(
    kind: str,
    seed: int,
    out,
    res: int = 200,
    spp: int = 64,
    n_train: int = 64,
    n_test: int = 16,
    n_relight: int = 16,
    *,
    force: bool = False,
    data_root=None,
    progress: bool = True,
    verify: bool = True,
) -> Path:
    """Render scene ``seed`` of ``kind`` ('glossy' | 'two_material') into folder ``out``; returns ``out``.

    A complete scene with the same kind/seed/parameters already in ``out`` is kept (unless ``force``);
    a different scene there is replaced only with ``force``. Raises :class:`MitsubaMissing` (an ImportError)
    without mitsuba. The scene is written to ``<out>.partial`` and renamed when complete.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    out, params = Path(out), scene_params(res, spp, n_train, n_test, n_relight)
    state = scene_state(out, kind, seed, params)
    if state == "complete" and not force:
        print(f"{out}: complete, skipped (--force to redo)")
        return out
    if state == "other" and not force:
        raise FileExistsError(f"{out} exists and is not this complete scene; use --force to replace it")
    if out.exists() and any(out.iterdir()) and not (out / "transforms_train.json").is_file():
        raise FileExistsError(f"{out} is not a scene folder (no transforms_train.json); not replacing it")
    from scenegen.render import mitsuba

    mitsuba()  # fail before any work
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _write_scene(tmp, kind, int(seed), params, Path(data_root or DEFAULT_DATA_ROOT), progress, verify)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def suite_seed(index: int, base_seed: int = 0) -> int:
    """Seed of scene ``index`` of a suite: base_seed + index."""
    return int(base_seed) + int(index)


def make_suite(kind: str, count: int, root, base_seed: int = 0, **kwargs) -> list[Path]:
    """Scenes ``root/<kind>_000 ..`` with seeds ``suite_seed(k, base_seed)``."""
    return [make_scene(kind, suite_seed(k, base_seed), Path(root) / f"{kind}_{k:03d}", **kwargs) for k in range(count)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=KINDS, help="one scene of this kind (with --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--suite", choices=KINDS, help="--count scenes <kind>_000.. under --out")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--base-seed", type=int, default=0, help="suite scene k has seed base-seed + k")
    p.add_argument("--out", type=Path, help="scene folder (or suite root)")
    p.add_argument("--res", type=int, default=200)
    p.add_argument("--spp", type=int, default=64)
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-test", type=int, default=16)
    p.add_argument("--n-relight", type=int, default=16, help="relight views = the first n test cameras")
    p.add_argument("--force", action="store_true", help="re-render scenes that exist")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="holds envmaps/ and shared meshes")
    p.add_argument("--no-verify", action="store_true", help="skip the checks stored in meta.json")
    p.add_argument("--list", action="store_true", help="print the recipes only")
    p.add_argument("--verify", type=Path, metavar="DIR", help="print the checks of a written scene")
    return p


def _jobs(a) -> list[tuple[str, int, Path | None]]:
    if a.suite:
        return [(a.suite, suite_seed(k, a.base_seed), a.out and a.out / f"{a.suite}_{k:03d}") for k in range(a.count)]
    return [(a.kind, a.seed, a.out)]


def main(argv=None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if a.verify:
        from scenegen.verify import verify_scene

        print(json.dumps(verify_scene(a.verify), indent=2))
        return 0
    if not (a.kind or a.suite):
        p.error("give --kind (one scene), --suite (several) or --verify DIR")
    if a.list:
        for kind, seed, out in _jobs(a):
            print(f"{out or '-'}: {describe(make_recipe(kind, seed))}")
        return 0
    if a.out is None:
        p.error("--out is required")
    kw = dict(
        res=a.res,
        spp=a.spp,
        n_train=a.n_train,
        n_test=a.n_test,
        n_relight=a.n_relight,
        force=a.force,
        data_root=a.data_root,
        verify=not a.no_verify,
    )
    try:
        for kind, seed, out in _jobs(a):
            t0 = time.time()
            make_scene(kind, seed, out, **kw)
            print(f"{out}: {describe(make_recipe(kind, seed))} ({time.time() - t0:.0f} s)")
    except MitsubaMissing as e:
        print(e, file=sys.stderr)
        return 2
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"make_scene: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
