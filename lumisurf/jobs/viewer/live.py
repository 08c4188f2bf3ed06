"""``lumisurf train ... --viewer``: the viewer page while a run trains.

The training loop calls :meth:`TrainingViewer.on_step` after every step (``TrainingLoop.step_hooks``). With no
browser connected it only appends the step's scalars to a ring buffer. With one, every ``refresh_s`` it sends the
step, the ETA and the loss / PSNR curves, and it re-meshes the field (marching cubes at ``mesh_resolution``,
vertex colors) and redraws the occupied cells in the training thread, no more often than keeps that work under
``max_overhead`` of the training time (the interval grows with what the last mesh cost). Everything runs between
steps, so the model is never read while the optimiser writes it.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from lumisurf.jobs.viewer.scene_graph import setup_scene, viser
from lumisurf.jobs.viewer.server import preview_mesh


def occupied_cells(model) -> np.ndarray | None:
    """Centres [M, 3] of the space the model fills (the occupancy grid of a neural field, the voxels of a
    sparse-voxel model), or None before there is any."""
    cells = model.occupied_cells()
    return None if cells is None else cells.cpu().numpy()


class TrainingViewer:
    """The live page of one training run (its scene in the normalised frame)."""

    def __init__(
        self,
        scene,
        host: str = "127.0.0.1",
        port: int = 8080,
        refresh_s: float = 5.0,
        mesh_every_s: float = 15.0,
        mesh_resolution: int = 64,
        max_overhead: float = 0.05,
        max_points: int = 20000,
    ):
        self.refresh_s, self.mesh_every_s, self.mesh_resolution = refresh_s, mesh_every_s, mesh_resolution
        self.max_overhead, self.max_points = max_overhead, max_points
        self.history: deque = deque(maxlen=20000)  # (step, loss, psnr, elapsed)
        self._last_gui = self._last_mesh = -float("inf")
        self._mesh_cost = 0.0
        self.meshes_sent = self.occupied = 0
        self.hook_seconds = 0.0  # time the training thread spent on the page (while a browser was connected)
        self.server = viser().ViserServer(host=host, port=port, verbose=False)
        self.frustums = setup_scene(self.server, scene.split("train"), lambda i: None)
        self._gui()

    def _gui(self) -> None:
        gui, uplot = self.server.gui, viser().uplot
        self.status = gui.add_markdown("training: waiting for the first step")
        self.show_cells = gui.add_checkbox("occupied cells", initial_value=False)
        self.show_cells.on_update(lambda _: self._cells_visible())
        empty, steps = (np.zeros(1), np.zeros(1)), {"x": uplot.Scale(time=False)}
        self.loss_plot = gui.add_uplot(
            empty,
            (uplot.Series(label="step"), uplot.Series(label="loss", stroke="red")),
            title="loss",
            aspect=2.0,
            scales={**steps, "y": uplot.Scale(distr=3)},
        )
        self.psnr_plot = gui.add_uplot(
            empty,
            (uplot.Series(label="step"), uplot.Series(label="PSNR", stroke="blue")),
            title="PSNR (dB, training batch)",
            aspect=2.0,
            scales=steps,
        )
        self.cells = None

    def _cells_visible(self) -> None:
        if self.cells is not None:
            self.cells.visible = self.show_cells.value

    # ------------------------------------------------------------------ the training hook
    def on_step(self, loop, scalars: dict) -> None:
        self.history.append((loop.step, scalars.get("loss", np.nan), scalars.get("psnr", np.nan), loop.elapsed))
        if not self.server.get_clients():
            return  # nobody looks: nothing more to do
        now = time.perf_counter()
        if now - self._last_gui >= self.refresh_s:
            self._last_gui = now
            self._send_progress(loop)
        if now - self._last_mesh >= max(self.mesh_every_s, self._mesh_cost / self.max_overhead):
            self._send_geometry(loop.model)
            self._last_mesh = time.perf_counter()
            self._mesh_cost = self._last_mesh - now
        self.hook_seconds += time.perf_counter() - now

    def _send_progress(self, loop) -> None:
        h = np.asarray(self.history, np.float64)
        step, elapsed = loop.step, loop.elapsed
        total = loop.clock.estimated_total_steps(step, elapsed)
        eta = (total - step) * elapsed / max(step, 1)
        cells = f" · {self.occupied} occupied cells" if self.occupied else ""
        self.status.content = (
            f"step **{step}** / ~{total} · {elapsed / 60:.1f} min · ETA {eta / 60:.1f} min · "
            f"loss {h[-1, 1]:.4f} · PSNR {h[-1, 2]:.2f} dB{cells}"
        )
        keep = np.unique(np.linspace(0, len(h) - 1, min(len(h), 300)).astype(int))  # at most 300 points a curve
        self.loss_plot.data = (h[keep, 0], np.clip(h[keep, 1], 1e-8, None))
        self.psnr_plot.data = (h[keep, 0], h[keep, 2])

    def _send_geometry(self, model) -> None:
        was_training = model.training
        model.eval()
        try:
            mesh = preview_mesh(model, next(model.parameters()).device, self.mesh_resolution)
            cells = occupied_cells(model)
        finally:
            model.train(was_training)
        if mesh is not None:
            self.server.scene.add_mesh_trimesh("/mesh", mesh)
            self.meshes_sent += 1
        if cells is not None and len(cells):
            pick = cells[np.random.default_rng(0).choice(len(cells), min(len(cells), self.max_points), replace=False)]
            self.cells = self.server.scene.add_point_cloud(
                "/occupied_cells",
                pick.astype(np.float32),
                colors=(230, 120, 30),
                point_size=0.006,
                visible=self.show_cells.value,
            )
            self.occupied = len(cells)

    def stop(self) -> None:
        self.server.stop()
