"""Reflection-aware loss weights (Ref-NeuS, Ge et al. ICCV 2023), as pure functions.

A surface point seen in several training views keeps its colour if it is diffuse and changes it if it
reflects its surroundings. Ref-NeuS projects the point into other views, takes the mean Mahalanobis
distance between the reference pixel and the projected ones as a *reflection score* and divides the
photometric loss by it, so that the geometry is not bent to explain reflections. We bound the weight at 1
(``1 / max(gamma * score, 1)``): consistent pixels keep their plain weight, no pixel is amplified.

The same score gates a normal-smoothness term (with an image-edge gate), so flat mirrors are smoothed and
textured or diffuse surfaces are left alone.

Cameras follow :mod:`lumisurf.data.cameras` (OpenCV, pixel centres at +0.5); images are float RGB in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.data.cameras import Cameras, distort_points


def project_to_views(points: Tensor, cameras: Cameras, views: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Project ``points`` ``[R, 3]`` into cameras ``views`` ``[R, K]`` (long).

    Returns pixel positions ``px, py`` ``[R, K]`` (continuous, pixel units) and ``in_front`` ``[R, K]`` bool
    (camera-space z > 1e-6)."""
    c2w = cameras.c2w[views]  # [R, K, 4, 4]
    rel = points[:, None, :] - c2w[..., :3, 3]  # [R, K, 3]
    cam = torch.einsum("rkji,rkj->rki", c2w[..., :3, :3], rel)  # R^T (x - t): [R, K, 3]
    z = cam[..., 2]
    in_front = z > 1e-6
    zs = torch.where(in_front, z, torch.ones_like(z))
    x, y = cam[..., 0] / zs, cam[..., 1] / zs
    if cameras.distortion is not None:
        k = cameras.distortion[views]  # [R, K, 4]
        x, y = distort_points(x.reshape(-1), y.reshape(-1), k.reshape(-1, 4))
        x, y = x.reshape(views.shape), y.reshape(views.shape)
    return cameras.fx[views] * x + cameras.cx[views], cameras.fy[views] * y + cameras.cy[views], in_front


def bilinear_lookup(images: Tensor, views: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear samples of ``images`` ``[V, H, W, C]`` at ``(px, py)`` ``[R, K]`` of views ``views`` ``[R, K]``.

    Returns values ``[R, K, C]`` (float; uint8 images are scaled to [0, 1]) and ``inside`` ``[R, K]`` (the four
    taps lie in the image)."""
    n, h, w, c = images.shape
    x, y = px - 0.5, py - 0.5  # pixel centres at integer positions
    x0, y0 = torch.floor(x), torch.floor(y)
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 <= w - 1) & (y0 + 1 <= h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    xi = x0.long().clamp(0, w - 2)
    yi = y0.long().clamp(0, h - 2)
    flat = images.reshape(n * h * w, c)
    base = views * (h * w) + yi * w + xi  # [R, K]

    scale = 1.0 / 255.0 if images.dtype == torch.uint8 else 1.0

    def tap(offset: int) -> Tensor:
        return flat[base + offset].float() * scale

    top = tap(0) * (1 - fx) + tap(1) * fx
    bottom = tap(w) * (1 - fx) + tap(w + 1) * fx
    return top * (1 - fy) + bottom * fy, inside


def reflection_score(reference: Tensor, colors: Tensor, valid: Tensor, inv_cov: Tensor) -> Tensor:
    """Ref-NeuS' score: mean Mahalanobis distance ``[R]`` between ``reference`` ``[R, 3]`` and the valid
    ``colors`` ``[R, K, 3]`` (``valid`` ``[R, K]``), under the colour covariance's inverse ``inv_cov`` ``[3, 3]``.
    0 where no view is valid."""
    diff = reference[:, None, :] - colors  # [R, K, 3]
    maha = torch.einsum("rki,ij,rkj->rk", diff, inv_cov, diff).clamp_min(0).sqrt()  # [R, K]
    v = valid.to(maha.dtype)
    return (maha * v).sum(-1) / v.sum(-1).clamp_min(1.0)


def anomaly_weights(score: Tensor, gamma: float) -> Tensor:
    """Photometric weights ``1 / max(gamma * score, 1)`` ``[R]`` in (0, 1]: Ref-NeuS' ``1 / beta^2`` bounded at 1."""
    return 1.0 / (gamma * score).clamp_min(1.0)


def edge_gate(images: Tensor, views: Tensor, px: Tensor, py: Tensor, scale: float) -> Tensor:
    """``exp(-|grad I| / scale)`` ``[R]`` at pixel positions ``(px, py)`` ``[R]`` of views ``[R]``: 1 on flat
    image regions, -> 0 across edges (the grey image's central differences over one pixel)."""
    one = torch.ones_like(px)
    pos = torch.stack([px + one, px - one, px, px], -1), torch.stack([py, py, py + one, py - one], -1)  # [R, 4]
    vals, _ = bilinear_lookup(images, views[:, None].expand(-1, 4), *pos)  # [R, 4, C]
    grey = vals.mean(-1)  # [R, 4]
    grad = 0.5 * torch.stack([grey[:, 0] - grey[:, 1], grey[:, 2] - grey[:, 3]], -1).norm(dim=-1)
    return torch.exp(-grad / scale)


def color_inverse_covariance(images: Tensor, masks: Tensor | None, n: int, generator: torch.Generator) -> Tensor:
    """``[3, 3]`` inverse of the covariance of ``n`` random (foreground, where masks ``[V, H, W]`` exist) pixels
    of ``images`` ``[V, H, W, 3]`` (uint8 or float), regularised by 1e-4 on the diagonal."""
    flat = images.reshape(-1, images.shape[-1])
    idx = torch.randint(0, flat.shape[0], (n,), generator=generator)
    if masks is not None:
        fg = (masks.reshape(-1) > 0.5).nonzero()[:, 0]
        if len(fg) >= 16:
            idx = fg[torch.randint(0, len(fg), (n,), generator=generator)]
    px = flat[idx].double()
    px = px / 255.0 if images.dtype == torch.uint8 else px
    cov = torch.cov(px.T) + 1e-4 * torch.eye(3, dtype=torch.float64)
    return torch.linalg.inv(cov).float()
