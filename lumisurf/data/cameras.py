"""Cameras: the one camera convention of lumisurf.

Convention (said once, here; every reader converts to it at the boundary):

* ``c2w`` is camera-to-world, 4x4, **OpenCV**: camera x right, y down, looks along **+z**.
  (Blender/OpenGL/NeRF files use x right, y up, looks along -z: flip the y and z columns.)
* Intrinsics are pinhole ``fx, fy, cx, cy`` in pixels for the image size ``width x height``.
  Pixel (col, row) covers [col, col+1) x [row, row+1); its centre is (col + 0.5, row + 0.5).
  Formats whose pixel centres sit at integer coordinates (NeuS/IDR) add 0.5 to cx, cy; COLMAP and
  instant-ngp already put the top-left pixel centre at (0.5, 0.5).
* Optional distortion is OpenCV radial-tangential ``k1, k2, p1, p2`` on normalised image
  coordinates. lumisurf *models* distortion: rays are cast through the undistorted direction of
  each pixel (iterative inversion), images are never resampled.
* World units are those of the frame the cameras live in; after normalisation the object sits
  inside the unit sphere (see ``normalization.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass
class Cameras:
    """A batch of ``n`` pinhole cameras sharing one image size."""

    c2w: Tensor  # [n, 4, 4] float32, OpenCV camera-to-world
    fx: Tensor  # [n]
    fy: Tensor  # [n]
    cx: Tensor  # [n]
    cy: Tensor  # [n]
    width: int
    height: int
    distortion: Tensor | None = None  # [n, 4] k1, k2, p1, p2 or None

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device) -> Cameras:
        dist = None if self.distortion is None else self.distortion.to(device)
        return replace(
            self,
            c2w=self.c2w.to(device),
            fx=self.fx.to(device),
            fy=self.fy.to(device),
            cx=self.cx.to(device),
            cy=self.cy.to(device),
            distortion=dist,
        )

    def subset(self, idx) -> Cameras:
        """Cameras ``idx`` (list, slice or tensor of indices)."""
        idx = torch.as_tensor(idx, dtype=torch.long) if not isinstance(idx, slice) else idx
        dist = None if self.distortion is None else self.distortion[idx]
        return replace(
            self, c2w=self.c2w[idx], fx=self.fx[idx], fy=self.fy[idx], cx=self.cx[idx], cy=self.cy[idx], distortion=dist
        )

    @staticmethod
    def concatenate(batches: list[Cameras]) -> Cameras:
        """One batch of the cameras of ``batches`` (same image size), in order."""
        c = batches[0]
        dist = None if c.distortion is None else torch.cat([b.distortion for b in batches])
        return Cameras(
            *(torch.cat([getattr(b, a) for b in batches]) for a in ("c2w", "fx", "fy", "cx", "cy")),
            width=c.width,
            height=c.height,
            distortion=dist,
        )

    def transformed(self, scale: float, center: Tensor) -> Cameras:
        """Cameras in the frame ``x' = (x - center) / scale`` (rotation unchanged)."""
        c2w = self.c2w.clone()
        c2w[:, :3, 3] = (c2w[:, :3, 3] - center.to(c2w)) / scale
        return replace(self, c2w=c2w)

    @property
    def centers(self) -> Tensor:  # [n, 3]
        return self.c2w[:, :3, 3]

    def intrinsics_matrix(self) -> Tensor:  # [n, 3, 3]
        K = torch.zeros(len(self), 3, 3, dtype=self.c2w.dtype, device=self.device)
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = self.fx, self.fy, self.cx, self.cy, 1.0
        return K

    def rays(self, cam_idx: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
        """World rays through image positions ``(px, py)`` (pixels, continuous) of cameras ``cam_idx``.

        cam_idx, px, py: [n_rays]. Returns origins [n_rays, 3] and unit directions [n_rays, 3].
        """
        x = (px - self.cx[cam_idx]) / self.fx[cam_idx]
        y = (py - self.cy[cam_idx]) / self.fy[cam_idx]
        if self.distortion is not None:
            x, y = undistort_points(x, y, self.distortion[cam_idx])
        d_cam = torch.stack([x, y, torch.ones_like(x)], -1)  # [n_rays, 3]
        rot = self.c2w[cam_idx, :3, :3]  # [n_rays, 3, 3]
        d = torch.einsum("nij,nj->ni", rot, d_cam)
        d = d / d.norm(dim=-1, keepdim=True)
        return self.c2w[cam_idx, :3, 3], d

    def pixel_rays(self, cam: int, downscale: int = 1) -> tuple[Tensor, Tensor, int, int]:
        """All rays of camera ``cam`` (pixel centres; every ``downscale``-th pixel block centre).

        Returns origins [h*w, 3], directions [h*w, 3], h, w (row-major order).
        """
        h, w = self.height // downscale, self.width // downscale
        rows = (torch.arange(h, device=self.device, dtype=torch.float32) + 0.5) * downscale
        cols = (torch.arange(w, device=self.device, dtype=torch.float32) + 0.5) * downscale
        py, px = torch.meshgrid(rows, cols, indexing="ij")
        idx = torch.full((h * w,), cam, dtype=torch.long, device=self.device)
        o, d = self.rays(idx, px.reshape(-1), py.reshape(-1))
        return o, d, h, w

    def project(self, points: Tensor, cam: int) -> tuple[Tensor, Tensor]:
        """Project world points [n, 3] into camera ``cam`` (ignoring distortion).

        Returns pixel coordinates [n, 2] (col, row; continuous) and camera-space depth z [n].
        """
        w2c = torch.linalg.inv(self.c2w[cam])
        pc = points @ w2c[:3, :3].T + w2c[:3, 3]
        z = pc[:, 2]
        zs = z.clamp_min(1e-8)
        u = self.fx[cam] * pc[:, 0] / zs + self.cx[cam]
        v = self.fy[cam] * pc[:, 1] / zs + self.cy[cam]
        return torch.stack([u, v], -1), z


def distort_points(x: Tensor, y: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """OpenCV radial-tangential distortion of normalised coordinates; k: [..., 4] = k1, k2, p1, p2."""
    k1, k2, p1, p2 = k.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def undistort_points(xd: Tensor, yd: Tensor, k: Tensor, iters: int = 10) -> tuple[Tensor, Tensor]:
    """Invert :func:`distort_points` by fixed-point iteration (OpenCV's ``undistortPoints`` scheme)."""
    k1, k2, p1, p2 = k.unbind(-1)
    x, y = xd.clone(), yd.clone()
    for _ in range(iters):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return x, y
