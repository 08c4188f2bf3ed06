"""`lumisurf view` in a real browser: Debian's chromium driven by Playwright (extras 'viewer' and 'browser-test';
`.ci/run` installs chromium). Screenshots are kept in RUN/viewer_test/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("viser", reason="the viewer needs the 'viewer' extra (viser)")
playwright = pytest.importorskip("playwright.sync_api", reason="browser tests need the 'browser-test' extra")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium; .ci/run does it)", allow_module_level=True)
# the flags a sandboxed machine without network needs (no GPU, no background fetches)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _wait(cond, timeout: float, what: str):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def _object_fraction(png: Path) -> float:
    """Share of the centre third of a screenshot that is not the page's white background."""
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    h, w = img.shape[:2]
    centre = img[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]
    return float((np.abs(centre - 255).sum(-1) > 40).mean())


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    from lumisurf.cli import main
    from lumisurf.data.load import load_scene_normalized_as
    from lumisurf.jobs.restore import load_run
    from lumisurf.jobs.viewer.server import RunViewer, run_mesh

    run = tmp_path_factory.mktemp("view") / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--max-steps",
                "2",
                "--device",
                "cpu",
                "--no-progress",
                "data.synthetic_resolution=32",
                "data.synthetic_views=6",
                "train.batch_rays=64",
                "train.val_every=0",
                "train.finalize=false",
            ]
        )
        == 0
    )
    loaded = load_run(run, "cpu")
    scene = load_scene_normalized_as(loaded.cfg.data, loaded.normalization)
    v = RunViewer(loaded, scene, run_mesh(loaded, resolution=48), port=0, levels=(48, 96), rest_s=0.2)
    yield v, run / "viewer_test", len(scene.split("train"))
    v.stop()


def test_viewer_in_chromium(viewer):
    v, shots, n_views = viewer
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 600})
        page.goto(f"http://127.0.0.1:{v.server.get_port()}/")
        _wait(lambda: v.renderers, 30, "the page to connect")
        page.get_by_text(f"{n_views} cameras").wait_for(timeout=30_000)  # the panel is up
        time.sleep(3.0)  # the mesh (a GLB) and the thumbnails load after the panel
        page.screenshot(path=str(shots / "1_mesh.png"))
        assert _object_fraction(shots / "1_mesh.png") > 0.1  # the object, not an empty page
        assert len(v.frustums) == n_views  # one frustum per dataset view

        # switch to the live render in the page, then drag the camera: a new render arrives
        page.get_by_role("combobox", name="view").click()
        page.get_by_role("option", name="rgb").click()
        _wait(lambda: v.state.mode == "rgb", 10, "the view mode to reach the server")
        client = next(iter(v.server.get_clients().values()))
        renderer = v.renderers[client.client_id]
        _wait(lambda: v.state.last_render.get("published_side") == 96, 60, "the first view, refined")
        before_pos, before_version = np.array(client.camera.position), renderer.version
        page.mouse.move(450, 300)
        page.mouse.down()
        page.mouse.move(520, 320, steps=8)
        page.mouse.up()
        _wait(lambda: not np.allclose(client.camera.position, before_pos), 10, "the camera to move")
        took = _wait(lambda: v.state.last_render["version"] > before_version, 30, "a render of the moved view")
        _wait(lambda: v.state.last_render["published_side"] == 96, 60, "the refined render")  # at rest: finer
        time.sleep(0.5)
        page.screenshot(path=str(shots / "2_render.png"))
        assert _object_fraction(shots / "2_render.png") > 0.1
        print(f"first render of the moved view after {took:.2f} s")

        # click a frustum: its image and its render, side by side in the panel
        i = 1
        target = v.split.cameras.c2w[i, :3, 3].double().numpy()
        client.camera.position = target * 1.35  # behind camera i, looking at it: its frustum's image in the centre
        client.camera.look_at = target  # (after the position: viser moves look_at along with the position)
        time.sleep(1.5)
        page.screenshot(path=str(shots / "3_before_click.png"))
        page.mouse.click(450, 300)
        _wait(lambda: v.state.clicked is not None, 15, "a frustum click")
        _wait(lambda: v.compare.image.shape[1] > 16, 30, "the image | render comparison")
        time.sleep(0.5)
        page.screenshot(path=str(shots / "3_clicked.png"))
        assert v.state.clicked == i and v.compare.label == f"camera {i}: image | render"
        browser.close()


def test_training_page_in_chromium(tmp_path):
    """`train --viewer`: the page shows the step, the curves and a mesh preview while the run trains."""
    import threading

    from lumisurf.config import apply_overrides
    from lumisurf.data.load import load_config_scene
    from lumisurf.jobs.viewer.live import TrainingViewer
    from lumisurf.kinds import train
    from lumisurf.presets import preset_config
    from lumisurf.train.run_dir import RunDir

    cfg = apply_overrides(
        preset_config("lumisurf"),
        [
            "data.synthetic_resolution=32",
            "data.synthetic_views=6",
            "train.batch_rays=64",
            "train.val_every=0",
            "train.finalize=false",
            "train.device=cpu",
            "train.max_steps=100000",
            "train.max_minutes=0.35",
        ],
    )
    scene = load_config_scene(cfg.data)
    live = TrainingViewer(scene, port=0, refresh_s=0.5, mesh_every_s=1.0, mesh_resolution=32)
    run = RunDir(tmp_path / "run")
    run.prepare_new(cfg, force=False, resume=False)
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(r=train(cfg, run, progress=False, scene=scene, hooks=(live.on_step,)))
    )
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.goto(f"http://127.0.0.1:{live.server.get_port()}/")
            _wait(lambda: live.server.get_clients(), 30, "the page to connect")
            worker.start()
            page.get_by_text("ETA").wait_for(timeout=30_000)  # the status line: step, ETA, loss, PSNR
            _wait(lambda: live.meshes_sent >= 2, 40, "two mesh previews")
            time.sleep(1.0)
            page.screenshot(path=str(run.root / "viewer_training.png"))
            assert _object_fraction(run.root / "viewer_training.png") > 0.05
            assert len(live.frustums) == len(scene.split("train"))
            browser.close()
    finally:
        worker.join(120)
        live.stop()
    assert result["r"].steps > 10 and len(live.history) == result["r"].steps
