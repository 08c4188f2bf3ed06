"""Progressive rendering for a viewer, free of any browser: the newest camera wins.

A camera move (or a mode switch) bumps a version. One worker thread renders the newest version at the coarsest
level at once (the view follows the mouse), then, once the camera has rested ``rest_s`` seconds, at each finer
level in turn. A render checks ``cancelled()`` between bands and gives up as soon as the version moves on, so a
stale picture is never published and a move never waits for a fine render to finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

# render(request, long_side, cancelled) -> image, or None when it gave up because cancelled() turned true
RenderFn = Callable[[Any, int, Callable[[], bool]], Any | None]
PublishFn = Callable[[Any, int, int], None]  # publish(image, long_side, version)


class ProgressiveRenderer:
    """Renders ``request`` objects (a camera and a mode: opaque here) at ``levels`` (longest image side, pixels,
    coarse to fine) through ``render`` and hands finished images to ``publish``."""

    def __init__(
        self,
        render: RenderFn,
        publish: PublishFn,
        levels: Sequence[int] = (64, 160, 320),
        rest_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.render, self.publish, self.levels, self.rest_s, self.clock = render, publish, tuple(levels), rest_s, clock
        self._cond = threading.Condition()
        self._request = None
        self._version = 0
        self._last_move = 0.0
        self._stopped = False
        self.cancelled_renders = 0  # renders given up because the camera moved (for tests and the status line)
        self._thread = threading.Thread(target=self._loop, name="lumisurf-view-render", daemon=True)
        self._thread.start()

    @property
    def version(self) -> int:
        return self._version

    def update(self, request) -> int:
        """A new camera (or mode): what is being rendered is dropped; returns the new version."""
        with self._cond:
            self._request, self._version, self._last_move = request, self._version + 1, self.clock()
            self._cond.notify_all()
            return self._version

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ worker
    def _loop(self) -> None:
        done_version, done_level = 0, -1  # the finest level published for the newest version
        while True:
            with self._cond:
                while not self._stopped and not self._work_left(done_version, done_level):
                    self._cond.wait(self._wait_time(done_version, done_level))
                if self._stopped:
                    return
                version, request = self._version, self._request
                level = done_level + 1 if done_version == version else 0
            image = self.render(request, self.levels[level], lambda v=version: self._version != v or self._stopped)
            if image is None or self._version != version:
                self.cancelled_renders += 1
                continue
            self.publish(image, self.levels[level], version)
            done_version, done_level = version, level

    def _work_left(self, done_version: int, done_level: int) -> bool:
        if self._request is None:
            return False
        if done_version != self._version:
            return True  # a new camera: the coarse level, now
        return done_level + 1 < len(self.levels) and self.clock() - self._last_move >= self.rest_s

    def _wait_time(self, done_version: int, done_level: int) -> float | None:
        """How long to sleep before the camera counts as resting (None: until notified)."""
        if self._request is None or done_version != self._version or done_level + 1 >= len(self.levels):
            return None
        return max(self.rest_s - (self.clock() - self._last_move), 1e-3)
