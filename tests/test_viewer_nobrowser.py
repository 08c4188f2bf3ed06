"""The viewer without a browser: progressive rendering (coarse while the camera moves, finer levels once it rests,
a fine render cancelled, never published, when the camera moves again), the training hook, the mesh colorings."""

from __future__ import annotations

import threading
import time

from tiny_runs import tiny_stage1_run

from lumisurf.jobs.viewer.scheduler import ProgressiveRenderer


class FakeRender:
    """Renders in bands of ``band_s`` seconds, 2 bands at the coarse level and 40 at the finest (2 s)."""

    def __init__(self, band_s=0.05):
        self.band_s, self.calls, self.fine_started = band_s, [], threading.Event()

    def __call__(self, request, side, cancelled):
        self.calls.append((request, side))
        if side == 320:
            self.fine_started.set()
        for _ in range({64: 2, 160: 4, 320: 40}[side]):
            if cancelled():
                return None
            time.sleep(self.band_s)
        return (request, side)


def _wait(cond, timeout=10.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.01)


def test_coarse_while_moving_finer_at_rest():
    published = []
    r = ProgressiveRenderer(FakeRender(0.01), lambda img, side, v: published.append(img), rest_s=0.5)
    try:
        for k in range(15):  # a drag: a new camera every 30 ms, never resting 0.5 s
            r.update(f"cam{k}")
            time.sleep(0.03)
        _wait(lambda: published)
        assert all(side == 64 for _, side in published)  # nothing finer while the camera moved
        _wait(lambda: published[-1] == ("cam14", 320))
        assert [side for req, side in published if req == "cam14"] == [64, 160, 320]  # coarse to fine, in order
    finally:
        r.stop()


def test_a_move_cancels_the_fine_render():
    published, fake = [], FakeRender(0.05)
    r = ProgressiveRenderer(fake, lambda img, side, v: published.append(img), rest_s=0.1)
    try:
        r.update("A")
        assert fake.fine_started.wait(10.0)  # A's coarse and middle levels are out; its 2 s fine render runs
        assert published == [("A", 64), ("A", 160)]
        t_move = time.monotonic()
        r.update("B")
        _wait(lambda: ("B", 64) in published)
        assert time.monotonic() - t_move < 1.5  # did not wait for A's fine render to finish (2 s)
        _wait(lambda: ("B", 320) in published)
        assert ("A", 320) not in published and r.cancelled_renders >= 1
        assert published.index(("B", 64)) < published.index(("B", 160)) < published.index(("B", 320))
    finally:
        r.stop()


def test_stop_ends_the_worker_mid_render():
    fake = FakeRender(0.05)
    r = ProgressiveRenderer(fake, lambda *a: None, rest_s=0.0)
    r.update("A")
    assert fake.fine_started.wait(10.0)
    t0 = time.monotonic()
    r.stop()
    assert not r._thread.is_alive() and time.monotonic() - t0 < 1.0


def test_missing_viewer_extra_is_one_clear_line(tmp_path, monkeypatch, capsys):
    import sys

    from lumisurf.cli import main

    monkeypatch.setitem(sys.modules, "viser", None)
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['lumisurf: error: the viewer needs viser: pip install -e ".[viewer]"']


def test_training_hook_without_a_browser_only_records(tiny_scene):
    """`train --viewer` with nobody on the page: a step appends its scalars, and nothing else runs."""
    import pytest

    pytest.importorskip("viser", reason="the viewer needs the 'viewer' extra (viser)")
    from types import SimpleNamespace

    from lumisurf.jobs.viewer.live import TrainingViewer

    live = TrainingViewer(tiny_scene, port=0)
    try:
        loop = SimpleNamespace(step=1, elapsed=0.1, model=None, clock=None)  # would fail if used
        for k in range(5):
            loop.step = k + 1
            live.on_step(loop, {"loss": 0.5, "psnr": 20.0})
        assert len(live.history) == 5 and live.meshes_sent == 0 and live.hook_seconds == 0.0
        assert len(live.frustums) == len(tiny_scene.split("train"))
    finally:
        live.stop()


def test_material_run_offers_albedo_roughness_metallic_on_the_mesh(tmp_path):
    from lumisurf.cli import main
    from lumisurf.jobs.restore import load_run
    from lumisurf.jobs.viewer.scene_graph import mesh_colorings
    from lumisurf.jobs.viewer.server import run_mesh

    run = tmp_path / "nero"
    assert (
        main(
            [
                "train",
                "--preset",
                "nero",
                "--out",
                str(run),
                "--max-steps",
                "2",
                "--device",
                "cpu",
                "--no-progress",
                "data.synthetic_resolution=16",
                "data.synthetic_views=5",
                "train.batch_rays=32",
                "train.val_every=0",
                "train.finalize=false",
                "sampler.n_samples=8",
                "sampler.n_importance=8",
                "sampler.up_sample_steps=2",
            ]
        )
        == 0
    )
    assert main(["extract", str(run), "--resolution", "24"]) == 0
    mesh = run_mesh(load_run(run, "cpu"))
    col = mesh_colorings(mesh, run / "mesh_materials.ply")
    assert {"radiance", "albedo", "roughness", "metallic"} <= set(col)
    assert all(v.shape == (len(mesh.vertices), 3) and v.dtype.name == "uint8" for v in col.values())
    assert set(mesh_colorings(mesh, None)) == {"radiance"}


def test_stage2_run_is_relit_under_the_learned_and_a_chosen_map(tmp_path):
    import numpy as np
    import pytest

    from lumisurf.cli import main
    from lumisurf.data.hdr import write_hdr
    from lumisurf.data.load import load_scene_normalized_as
    from lumisurf.jobs.restore import load_run
    from lumisurf.jobs.viewer.relit import Relighter

    run = tiny_stage1_run(tmp_path / "run")
    assert (
        main(
            [
                "material",
                str(run),
                "--steps",
                "2",
                "--no-progress",
                "--no-export",
                "texture_size=64",
                "batch_rays=64",
                "light_samples=8",
                "grid.implementation=torch",
            ]
        )
        == 0
    )
    sky = np.ones((8, 16, 3), np.float32)
    sky[:4] *= 3.0
    write_hdr(tmp_path / "sky.hdr", sky)
    relighter = Relighter(run, [tmp_path / "sky.hdr"], "cpu", light_samples=4)
    assert relighter.names == ("learned", "sky")
    loaded = load_run(run, "cpu")
    cams = load_scene_normalized_as(loaded.cfg.data, loaded.normalization).split("train").cameras.subset([0])
    for name in relighter.names:
        img = relighter.render(cams, name, lambda: False, bands=3)
        assert img.shape == (24, 24, 3) and img.dtype == np.uint8 and (img < 250).any(), name  # the object
    assert relighter.render(cams, "sky", lambda: True) is None
    pytest.importorskip("viser", reason="the page needs the 'viewer' extra")
    from lumisurf.jobs.viewer.server import RunViewer, run_mesh

    v = RunViewer(
        loaded,
        load_scene_normalized_as(loaded.cfg.data, loaded.normalization),
        run_mesh(loaded),
        port=0,
        relighter=relighter,
    )
    try:
        assert v.modes[-2:] == ("relit: learned", "relit: sky")
        from types import SimpleNamespace

        from lumisurf.jobs.viewer.scene_graph import wxyz

        c2w = cams.c2w[0].numpy()
        camera = SimpleNamespace(wxyz=wxyz(c2w[:3, :3]), position=c2w[:3, 3], fov=0.8, aspect=1.5)
        v.set_mode("relit: sky")  # what the page's menu does
        img = v._render((camera, "relit: sky"), 18, lambda: False)  # the page's path for a relit mode
        assert img.shape == (12, 18, 3) and (img < 250).any()
    finally:
        v.stop()
