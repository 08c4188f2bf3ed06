"""``lumisurf view RUN``: a viser page with the run's mesh, the dataset's cameras and a live render of the field.

Per browser tab a :class:`ProgressiveRenderer` follows the browser's camera: 64 px while it moves, finer once it
rests, dropped when it moves again. Renders of one model take turns (one lock); the page's view mode picks what
is shown: the mesh, or the field's rgb / normal / depth (and albedo / metallic / roughness for material runs)
as the background behind the frustums.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lumisurf.data.load import load_scene_normalized_as
from lumisurf.errors import LumisurfError
from lumisurf.jobs.extract import set_vertex_colors, vertex_radiance
from lumisurf.jobs.restore import load_run
from lumisurf.jobs.viewer.relit import Relighter
from lumisurf.jobs.viewer.scene_graph import add_mesh, bands_of, client_camera, mesh_colorings, setup_scene, viser
from lumisurf.jobs.viewer.scheduler import ProgressiveRenderer
from lumisurf.mesh.marching_cubes import extract_mesh
from lumisurf.train.visualize import depth_image, gt_image, normal_image, render_camera_for, to_uint8

FIELD_MODES = ("rgb", "normal", "depth")
MATERIAL_MODES = ("albedo", "metallic", "roughness")
BANDS = 8  # a render is cancellable between these horizontal bands
RELIT = "relit: "  # the view modes of a Stage II run: "relit: learned", "relit: <env file stem>"


def render_image(model, cfg, cams, mode: str, cancelled, device, bands: int = BANDS) -> np.ndarray | None:
    """Camera 0 of ``cams`` as a uint8 picture of ``mode``, band by band; None when ``cancelled()`` turns true."""
    rows = []
    for band in bands_of(cams, bands):
        if cancelled():
            return None
        with torch.no_grad():
            rows.append(picture(render_camera_for(model, band, 0, cfg, device, 1), mode))
    return np.concatenate(rows, 0)


def picture(out: dict, mode: str) -> np.ndarray:
    """One render output as uint8 [h, w, 3] in ``mode``."""
    if mode == "normal":
        return to_uint8(normal_image(out["normal"], out["opacity"]))
    if mode == "depth":
        return to_uint8(depth_image(out["depth"], out["opacity"]))
    if mode not in out:  # a material map of a band where no ray met the surface (surface-first leaves it out)
        return np.zeros((*out["rgb"].shape[:2], 3), np.uint8)
    img = out[mode]
    return to_uint8(img.expand(*img.shape[:2], 3) if img.shape[-1] == 1 else img)


@dataclass
class ViewerState:
    """What the page shows; shared by the GUI callbacks and the render threads."""

    mode: str = "mesh"
    last_render: dict = field(default_factory=dict)  # side, seconds (last finished); published version and side
    clicked: int | None = None  # the last frustum clicked


class RunViewer:
    """The page of one loaded run (:class:`lumisurf.jobs.restore.LoadedRun`) and its scene (normalised frame)."""

    def __init__(
        self,
        loaded,
        scene,
        mesh,
        host: str = "127.0.0.1",
        port: int = 8080,
        levels=(64, 160, 320),
        rest_s: float = 0.25,
        relighter=None,
    ):
        self.loaded, self.scene, self.levels, self.rest_s, self.relighter = loaded, scene, levels, rest_s, relighter
        self.state = ViewerState()
        self.lock = threading.Lock()
        self.renderers: dict[int, ProgressiveRenderer] = {}
        self.server = viser().ViserServer(host=host, port=port, verbose=False)
        self.split = scene.split("train")
        cams = self.split.cameras
        # inside the rig, in front of camera 0: no frustum between the first view and the object
        self.server.initial_camera.position = tuple(initial_position(cams))
        self.server.initial_camera.look_at = (0.0, 0.0, 0.0)
        self.frustums = setup_scene(self.server, self.split, self.on_frustum)
        self.mesh_data = mesh
        self.mesh = add_mesh(self.server, mesh) if mesh is not None else None
        self.colorings = mesh_colorings(mesh, loaded.run.root / "mesh_materials.ply") if mesh is not None else {}
        relit = tuple(f"{RELIT}{n}" for n in relighter.names) if relighter else ()
        self.modes = ("mesh",) + view_modes(loaded) + relit
        self._gui()
        self.server.on_client_connect(self.on_connect)
        self.server.on_client_disconnect(self.on_disconnect)

    # ------------------------------------------------------------------ GUI
    def _gui(self) -> None:
        gui = self.server.gui
        run = self.loaded.run.root
        gui.add_markdown(f"**{run.name}** · step {self.loaded.step} · {len(self.frustums)} cameras")
        self.mode_dropdown = gui.add_dropdown("view", self.modes, initial_value="mesh")
        self.mode_dropdown.on_update(lambda _: self.set_mode(self.mode_dropdown.value))
        if len(self.colorings) > 1:  # material runs: the mesh in albedo / roughness / metallic / material id
            self.color_dropdown = gui.add_dropdown("mesh color", tuple(self.colorings), initial_value="radiance")
            self.color_dropdown.on_update(lambda _: self.set_mesh_color(self.color_dropdown.value))
        hint = (
            "move the camera; pick a view mode; click a camera"
            if self.mesh is not None
            else "no mesh: the field has no surface yet (pick a render mode)"
        )
        self.status = gui.add_markdown(hint)
        self.compare = gui.add_image(np.zeros((8, 16, 3), np.uint8), label="clicked camera: image | render")

    def set_mode(self, mode: str) -> None:
        self.state.mode = mode
        if self.mesh is not None:
            self.mesh.visible = mode == "mesh"
        for client in self.server.get_clients().values():
            if mode == "mesh":
                client.scene.set_background_image(None)
            elif client.client_id in self.renderers:
                self.renderers[client.client_id].update((client.camera, mode))

    def set_mesh_color(self, name: str) -> None:
        mesh = self.mesh_data.copy()
        set_vertex_colors(mesh, self.colorings[name])
        self.mesh = add_mesh(self.server, mesh)  # same name: replaces the old one
        self.mesh.visible = self.state.mode == "mesh"

    # ------------------------------------------------------------------ clients
    def on_connect(self, client) -> None:
        r = ProgressiveRenderer(
            lambda req, side, cancelled: self._render(req, side, cancelled),
            lambda img, side, v, c=client: self._publish(c, img, side, v),
            levels=self.levels,
            rest_s=self.rest_s,
        )
        self.renderers[client.client_id] = r
        client.camera.on_update(lambda cam: self.state.mode != "mesh" and r.update((cam, self.state.mode)))

    def on_disconnect(self, client) -> None:
        r = self.renderers.pop(client.client_id, None)
        if r is not None:
            r.stop()

    def _render(self, request, side: int, cancelled):
        camera, mode = request
        if self.state.mode == "mesh":  # switched back to the mesh: refining the last render is wasted work
            return None
        t0 = time.perf_counter()
        with self.lock:
            cams = client_camera(camera, side, self.loaded.device)
            if mode.startswith(RELIT):
                img = self.relighter.render(cams, mode[len(RELIT) :], cancelled)
            else:
                img = render_image(self.loaded.model, self.loaded.cfg, cams, mode, cancelled, self.loaded.device)
        self.state.last_render.update(side=side, seconds=time.perf_counter() - t0)
        return img

    def _publish(self, client, img: np.ndarray, side: int, version: int) -> None:
        if self.state.mode == "mesh":
            return
        client.scene.set_background_image(img, format="jpeg", jpeg_quality=90)
        self.state.last_render.update(version=version, published_side=side)
        self.status.content = f"{self.state.mode}: {side} px in {self.state.last_render['seconds']:.2f} s"

    def on_frustum(self, i: int) -> None:
        """Camera ``i`` clicked: its image and the field's render of it, side by side, in the panel."""
        self.state.clicked = i
        threading.Thread(target=self._compare, args=(i,), daemon=True).start()

    def _compare(self, i: int) -> None:
        cams, cfg = self.split.cameras, self.loaded.cfg
        ds = max(1, round(max(cams.width, cams.height) / 200))
        with self.lock, torch.no_grad():
            out = render_camera_for(self.loaded.model, cams.to(self.loaded.device), i, cfg, self.loaded.device, ds)
        render = picture(out, "rgb")
        image = to_uint8(gt_image(self.split, i, cfg, ds))  # over the background the render uses
        h, w = min(image.shape[0], render.shape[0]), min(image.shape[1], render.shape[1])
        self.compare.image = np.concatenate([image[:h, :w], render[:h, :w]], 1)
        self.compare.label = f"camera {i}: image | render"

    def stop(self) -> None:
        for r in list(self.renderers.values()):
            r.stop()
        self.server.stop()


def initial_position(cams) -> np.ndarray:
    """Camera 0's direction from the origin, at 0.75 of its distance (at least 1.6: outside the unit sphere)."""
    p = cams.c2w[0, :3, 3].double().numpy()
    d = float(np.linalg.norm(p))
    return p / max(d, 1e-9) * max(0.75 * d, 1.6)


def view_modes(loaded) -> tuple[str, ...]:
    """The field renders a run offers: rgb / normal / depth, and albedo / metallic / roughness for Stage I
    material runs (a NeRO-style head)."""
    return FIELD_MODES + (MATERIAL_MODES if loaded.model.has_stage1_materials else ())


def run_mesh(loaded, resolution: int = 96):
    """RUN/mesh.ply moved into the normalised frame, or a quick ``resolution`` preview when none was extracted."""
    import trimesh

    if loaded.run.mesh_path.exists():
        mesh = trimesh.load(loaded.run.mesh_path, process=False)
        n = loaded.normalization
        mesh.vertices = (np.asarray(mesh.vertices) - np.asarray(n.center)) / n.scale
        return mesh
    return preview_mesh(loaded.model, loaded.device, resolution)


def preview_mesh(model, device, resolution: int = 96):
    """Marching cubes of the field at ``resolution`` with its vertex radiance (normalised frame); None without a
    surface."""

    try:
        with torch.no_grad():
            mesh = extract_mesh(
                model.surface_function(None, resolution),
                resolution=resolution,
                bound=1.0,
                device=device,
                progress=False,
            )
    except LumisurfError:  # no zero crossing yet (an untrained or collapsed field): the page shows no mesh
        return None
    if len(mesh.vertices) == 0:
        return None
    set_vertex_colors(mesh, vertex_radiance(model, mesh))
    return mesh


def view_run(root: Path, host: str = "127.0.0.1", port: int = 8080, device: str | None = None, env_files=()) -> None:
    """Serve RUN until Ctrl-C; a Stage II run adds relit modes (its learned lighting and ``env_files``)."""

    viser()  # a missing extra is one clear line, before the run is loaded
    loaded = load_run(Path(root), device)
    scene = load_scene_normalized_as(loaded.cfg.data, loaded.normalization)
    relighter = None
    if (Path(root) / "material" / "material.pt").exists():
        relighter = Relighter(Path(root), env_files, device)
    elif env_files:
        print("lumisurf view: --env needs a Stage II run (lumisurf material RUN); ignored")
    viewer = RunViewer(loaded, scene, run_mesh(loaded), host, port, relighter=relighter)
    print(f"lumisurf view: http://{host}:{viewer.server.get_port()}  (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        viewer.stop()
