"""Material-segmentation metrics: material-id IoU against GT id maps (clusters matched to GT ids by
the best one-to-one assignment over all views) and cross-view consistency of predicted probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from lumisurf.losses.segmentation import consistency_loss


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def matid_iou(pred_ids, gt_ids) -> dict:
    """IoU of predicted clusters vs GT material ids, on pixels that are foreground in the GT.

    pred_ids [n, H, W] int: cluster 0..K-1, -1 = background/none; gt_ids [n, H, W]: 0 background,
    1..G materials. Clusters are matched one-to-one to GT ids maximising the total intersection
    (Hungarian, ``linear_sum_assignment``); a GT id left unmatched scores IoU 0.
    Returns {"iou_per_class": {gt_id: iou}, "mean_iou": float, "mapping": {cluster: gt_id}}.
    """
    pred, gt = _np(pred_ids).astype(np.int64), _np(gt_ids).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"matid_iou: shapes differ {pred.shape} vs {gt.shape}")
    fg = gt > 0
    p, g = pred[fg], gt[fg]
    G = int(gt.max()) if gt.size else 0
    K = max(int(pred.max()) + 1, 1) if pred.size else 1
    if G == 0:
        return {"iou_per_class": {}, "mean_iou": float("nan"), "mapping": {}}
    keep = p >= 0
    inter = np.zeros((K, G), dtype=np.int64)
    np.add.at(inter, (p[keep], g[keep] - 1), 1)
    pred_count = np.bincount(p[keep], minlength=K)  # foreground pixels per cluster
    gt_count = np.bincount(g - 1, minlength=G)
    rows, cols = linear_sum_assignment(-inter)
    mapping = {int(r): int(c) + 1 for r, c in zip(rows, cols)}
    ious = dict.fromkeys(range(1, G + 1), 0.0)
    for r, c in zip(rows, cols):
        union = pred_count[r] + gt_count[c] - inter[r, c]
        ious[int(c) + 1] = float(inter[r, c] / union) if union > 0 else 0.0
    return {"iou_per_class": ious, "mean_iou": float(np.mean(list(ious.values()))), "mapping": mapping}


def matid_path(image_file) -> Path:
    """GT id map beside an image: ``train/r_0.png`` (or ``train/r_0``) -> ``train/r_0_matid.png``."""
    f = Path(image_file)
    stem = f.stem if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".exr") else f.name
    return f.with_name(stem + "_matid.png")


def read_matid_maps(files) -> np.ndarray:
    """GT material ids [n, H, W] uint8 (0 background) from the ``*_matid.png`` beside each image file."""
    from PIL import Image

    maps = []
    for f in files:
        path = matid_path(f)
        if not path.exists():
            raise FileNotFoundError(f"no material-id map {path}")
        a = np.asarray(Image.open(path))
        maps.append(a[..., 0] if a.ndim == 3 else a)
    return np.stack(maps).astype(np.uint8)


def cross_view_consistency(probs_per_view, valid) -> dict:
    """How well V views agree on the material of M surface points (probs_per_view [M, V, K], valid [M, V]).

    ``variance``: :func:`lumisurf.losses.segmentation.consistency_loss`. ``reprojection_iou``: over the
    (point, view) entries of points seen in >= 2 views, the per-view argmax label is compared with the
    point's consensus label (argmax of the mean over its valid views); mean over classes of the IoU of
    the two labelings (1 = every view agrees).
    """
    probs = torch.as_tensor(probs_per_view, dtype=torch.float64)
    valid = torch.as_tensor(valid, dtype=torch.bool)
    variance = float(consistency_loss(probs, valid))
    w = valid.to(probs.dtype)[..., None]
    consensus = ((probs * w).sum(1)).argmax(-1)  # [M]
    seen = valid & (valid.sum(1, keepdim=True) >= 2)  # [M, V]
    labels = probs.argmax(-1)[seen]  # [E]
    ref = consensus[:, None].expand_as(seen)[seen]  # [E]
    ious = []
    for k in range(probs.shape[-1]):
        a, b = labels == k, ref == k
        union = (a | b).sum()
        if union > 0:
            ious.append(float((a & b).sum()) / float(union))
    return {"reprojection_iou": float(np.mean(ious)) if ious else float("nan"), "variance": variance}
