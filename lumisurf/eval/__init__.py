"""Evaluation metrics: images (PSNR/SSIM/LPIPS, mask IoU, normal MAE) and geometry (Chamfer)."""

from __future__ import annotations

from lumisurf.eval.geometry_metrics import chamfer_distance, load_mesh, sample_surface
from lumisurf.eval.image_metrics import lpips_available, lpips_score, mask_iou, normal_mae_deg, psnr, ssim, ssim_map

__all__ = [
    "psnr",
    "ssim",
    "ssim_map",
    "lpips_available",
    "lpips_score",
    "mask_iou",
    "normal_mae_deg",
    "chamfer_distance",
    "load_mesh",
    "sample_surface",
]
