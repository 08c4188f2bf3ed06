"""Image metrics: PSNR, SSIM (its differentiable map lives in :mod:`lumisurf.losses.ssim`), LPIPS (if available
offline), mask IoU, alpha-weighted normal angular error.

Images are torch tensors ``[H, W, 3]`` or ``[B, H, W, 3]``, float in ``[0, 1]`` (sRGB unless the
caller decides otherwise). Scalar metrics return Python floats.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.losses.ssim import ssim_map  # noqa: F401  (part of the metrics API)


def _batched(x: Tensor) -> Tensor:
    """``[H, W, C]`` -> ``[1, H, W, C]``; ``[B, H, W, C]`` unchanged."""
    if x.dim() == 3:
        return x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected an image [H,W,C] or [B,H,W,C], got shape {tuple(x.shape)}")
    return x


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB for data range 1: ``-10 log10(mse)``.

    ``mask`` ([H, W], [B, H, W] or broadcastable to the image, values in [0, 1]) weights the
    pixels; the MSE is averaged over the weighted pixels and the channels. Returns inf if mse = 0.
    """
    err = (pred.double() - target.double()) ** 2  # [..., H, W, C]
    if mask is None:
        mse = err.mean()
    else:
        m = mask.double()
        if m.dim() == err.dim() - 1:
            m = m.unsqueeze(-1)
        m = m.expand_as(err)
        denom = m.sum()
        if denom <= 0:
            raise ValueError("psnr: the mask selects no pixel")
        mse = (err * m).sum() / denom
    mse = float(mse)
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM over channels and valid pixels of ``[H,W,3]`` / ``[B,H,W,3]`` images in [0, 1].

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=-1)``.
    """
    p = _batched(pred).double().permute(0, 3, 1, 2)
    t = _batched(target).double().permute(0, 3, 1, 2)
    return float(ssim_map(p, t, window, sigma).mean())


_HUB_WEIGHTS = {"alex": "alexnet-owt-", "vgg": "vgg16-"}
_LPIPS_CACHE: dict = {}


def _hub_checkpoint(net: str) -> Path | None:
    """The torchvision backbone weights in the torch hub cache, if present (never downloads)."""
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    hits = sorted(ckpt_dir.glob(_HUB_WEIGHTS[net] + "*.pth"))
    return hits[0] if hits else None


def lpips_available(net: str = "alex") -> tuple[bool, str]:
    """Whether LPIPS can run fully offline: (ok, reason). Checks packages and cached weights only."""
    if net not in _HUB_WEIGHTS:
        return False, f"unknown LPIPS backbone '{net}' (use one of {', '.join(_HUB_WEIGHTS)})"
    for pkg in ("lpips", "torchvision"):
        if importlib.util.find_spec(pkg) is None:
            return False, f"the '{pkg}' package is not installed"
    ckpt = _hub_checkpoint(net)
    if ckpt is None:
        return False, (
            f"no {_HUB_WEIGHTS[net]}*.pth backbone weights in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} (LPIPS would download them)"
        )
    lin = Path(importlib.util.find_spec("lpips").origin).parent / "weights" / "v0.1" / f"{net}.pth"
    if not lin.is_file():
        return False, f"the lpips linear-layer weights {lin} are missing"
    return True, f"lpips with {net} backbone ({ckpt.name})"


def lpips_score(pred: Tensor, target: Tensor, net: str = "alex") -> float | None:
    """Mean LPIPS distance (lower is better), or None when :func:`lpips_available` says no."""
    ok, _ = lpips_available(net)
    if not ok:
        return None
    import lpips  # noqa: PLC0415 (optional dependency)

    dev = pred.device
    key = (net, str(dev))
    if key not in _LPIPS_CACHE:
        _LPIPS_CACHE[key] = lpips.LPIPS(net=net, verbose=False).to(dev).eval()
    model = _LPIPS_CACHE[key]
    p = _batched(pred).float().permute(0, 3, 1, 2) * 2 - 1  # LPIPS wants [-1, 1]
    t = _batched(target).float().permute(0, 3, 1, 2).to(dev) * 2 - 1
    with torch.no_grad():
        return float(model(p, t).mean())


def mask_iou(pred_mask: Tensor, gt_mask: Tensor, threshold: float = 0.5) -> float:
    """Intersection over union of ``pred_mask > threshold`` and ``gt_mask > threshold``.

    Both empty -> 1.0 (perfect agreement).
    """
    p = pred_mask > threshold
    g = gt_mask > threshold
    union = int((p | g).sum())
    if union == 0:
        return 1.0
    return int((p & g).sum()) / union


def normal_mae_deg(pred_normals: Tensor, gt_normals: Tensor, weight: Tensor) -> float:
    """Weighted mean angle (degrees) between normal maps ``[..., 3]``; ``weight`` ``[...]``.

    Both normal maps are normalised first; pixels whose GT normal is zero get weight 0 (a zero
    predicted normal counts as 90 degrees). Returns nan when the total weight is 0.
    """
    p = pred_normals.double()
    g = gt_normals.double()
    g_len = g.norm(dim=-1)
    w = weight.double().expand(g_len.shape) * (g_len > 1e-8)
    cos = (F.normalize(p, dim=-1, eps=1e-12) * F.normalize(g, dim=-1, eps=1e-12)).sum(-1)
    ang = torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))
    total = float(w.sum())
    if total <= 0:
        return math.nan
    return float((ang * w).sum()) / total
