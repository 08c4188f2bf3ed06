"""Material assignment field A(p): position -> K logits -> softmax(logits / T) soft material ids.

Plus optional 2D warm starts: k-means soft maps on color (and a specular residual channel) and
user-given per-view integer-id masks, both returned as per-pixel probability maps [n, H, W, K]
(all zeros on background pixels).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lumisurf.config import AssignmentConfig
from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.encodings.hash_grid import HashGrid
from lumisurf.errors import DataError
from lumisurf.fields.mlp import mlp


class AssignmentField(nn.Module):
    """x [N, 3] (normalised frame) -> logits [N, K]; ``probs`` = softmax(logits / temperature).

    Backends: ``hash`` (its own small hash grid + MLP) or ``mlp`` (frequency encoding + MLP). The
    temperature is exp(log_temperature), learnable when ``learn_temperature``.
    """

    def __init__(self, cfg: AssignmentConfig | None = None):
        super().__init__()
        cfg = cfg or AssignmentConfig()
        if cfg.K < 1:
            raise ValueError(f"assignment: K must be >= 1, got {cfg.K}")
        self.cfg = cfg
        self.encoder = HashGrid(cfg.grid) if cfg.backend == "hash" else FrequencyEncoding(3, cfg.multires)
        extra = 3 if cfg.backend == "hash" else 0  # the frequency encoding already includes x
        self.mlp = mlp([self.encoder.output_dim + extra] + [cfg.hidden] * cfg.layers + [cfg.K])
        log_t = torch.tensor(math.log(cfg.temperature), dtype=torch.float32)
        self.log_temperature = nn.Parameter(log_t, requires_grad=cfg.learn_temperature)

    @property
    def K(self) -> int:
        return self.cfg.K

    @property
    def temperature(self) -> Tensor:
        return self.log_temperature.exp()

    def forward(self, x: Tensor) -> Tensor:
        """x [..., 3] -> logits [..., K]."""
        enc = self.encoder(x)
        if self.cfg.backend == "hash":
            enc = torch.cat([enc, x], -1)
        return self.mlp(enc)

    def probs(self, x: Tensor) -> Tensor:
        """x [..., 3] -> probabilities [..., K] (sum 1)."""
        return torch.softmax(self(x) / self.temperature, dim=-1)


# ----------------------------------------------------------------------------- 2D warm starts


def _kmeans_pp_init(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeds: x [P, D] -> centres [k, D]."""
    first = torch.randint(x.shape[0], (1,), generator=gen)
    centres = [x[first[0]]]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centres)).amin(-1) ** 2  # [P]
        if float(d2.sum()) <= 0:
            idx = torch.randint(x.shape[0], (1,), generator=gen)[0]
        else:
            idx = torch.multinomial(d2 / d2.sum(), 1, generator=gen)[0]
        centres.append(x[idx])
    return torch.stack(centres)


def kmeans(x: Tensor, k: int, iters: int = 20, seed: int = 0, max_points: int = 200_000) -> Tensor:
    """Lloyd's k-means on x [P, D] (fit on at most ``max_points`` random rows) -> centres [k, D],
    sorted by their first coordinate sum for a deterministic order."""
    gen = torch.Generator().manual_seed(seed)
    fit = x if x.shape[0] <= max_points else x[torch.randperm(x.shape[0], generator=gen)[:max_points]]
    centres = _kmeans_pp_init(fit, k, gen)
    for _ in range(iters):
        lab = torch.cdist(fit, centres).argmin(-1)
        new = torch.stack([fit[lab == j].mean(0) if (lab == j).any() else centres[j] for j in range(k)])
        if torch.allclose(new, centres):
            break
        centres = new
    return centres[torch.argsort(centres.sum(-1))]


def gaussian_mixture(x: Tensor, k: int, iters: int = 50, seed: int = 0, reg: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Full-covariance Gaussian mixture on x [P, D] by EM, started from :func:`kmeans`.

    Unlike k-means it fits clusters of different sizes and shapes (a large dielectric region whose albedo
    varies with the light next to a small, tight metal one). Returns responsibilities [P, k] (rows sum to 1)
    and the component means [k, D], in k-means' centre order. ``reg`` is added to each covariance's
    diagonal. Computed in float64."""
    xd = x.detach().double()
    d = xd.shape[1]
    resp = torch.nn.functional.one_hot(torch.cdist(xd, kmeans(x, k, seed=seed).double()).argmin(-1), k).double()
    eye = torch.eye(d, dtype=xd.dtype, device=xd.device)
    for _ in range(iters):
        nk = resp.sum(0) + 1e-9  # [k]
        means = resp.T @ xd / nk[:, None]  # [k, D]
        logp = []
        for j in range(k):
            dx = xd - means[j]  # [P, D]
            chol = torch.linalg.cholesky((resp[:, j, None] * dx).T @ dx / nk[j] + reg * eye)
            maha = (dx * torch.cholesky_solve(dx.T, chol).T).sum(-1)  # [P]
            logp.append(torch.log(nk[j] / nk.sum()) - 0.5 * maha - torch.log(torch.diagonal(chol)).sum())
        resp = torch.softmax(torch.stack(logp, -1), -1)
    return resp.to(x.dtype), (resp.T @ xd / (resp.sum(0)[:, None] + 1e-9)).to(x.dtype)


def kmeans_soft_maps(
    images: Tensor,
    masks: Tensor | None,
    K: int,
    residual: Tensor | None = None,
    temperature: float = 0.01,
    iters: int = 20,
    seed: int = 0,
) -> Tensor:
    """Soft material maps by k-means on pixel color (+ an optional residual channel).

    images [n, H, W, 3] in [0, 1]; masks [n, H, W] (foreground > 0.5) or None (all foreground);
    residual [n, H, W] (e.g. the specular residual |I - diffuse fit|) appended as a 4th feature.
    Soft assignment: softmax(-|f - c_k|^2 / temperature) over the K centres. Returns [n, H, W, K]
    float32 on the CPU, zero on background pixels.
    """
    images = torch.as_tensor(images).detach().cpu().float()  # preprocessing: runs on the CPU
    feats = (
        images if residual is None else torch.cat([images, torch.as_tensor(residual).cpu().to(images)[..., None]], -1)
    )
    fg = torch.ones(images.shape[:3], dtype=torch.bool) if masks is None else torch.as_tensor(masks).cpu() > 0.5
    x = feats[fg]  # [P, D]
    out = torch.zeros(*images.shape[:3], K, dtype=torch.float32)
    if x.shape[0] == 0:
        return out
    centres = kmeans(x, K, iters, seed)
    d2 = torch.cdist(x, centres) ** 2
    out[fg] = torch.softmax(-d2 / temperature, dim=-1)
    return out


def _read_ids(path: Path) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(path))
    return a[..., 0] if a.ndim == 3 else a


def load_mask_folder(path, files: list | None = None, K: int | None = None) -> Tensor:
    """User-given material masks: one PNG per view with integer ids (0 = background, 1..K = material).

    ``files``: the image file of each view; its mask is ``<stem>.png`` or ``<stem>_matid.png`` in the
    folder. Without ``files`` every PNG in the folder is used in sorted name order. K defaults to the
    largest id. Returns one-hot maps [n, H, W, K] float32 (material i -> component i - 1).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"mask folder {folder} does not exist")
    if files is None:
        paths = sorted(folder.glob("*.png"))
    else:
        paths = []
        for f in files:
            stem = Path(f).stem
            cands = [folder / f"{stem}.png", folder / f"{stem}_matid.png"]
            hit = next((c for c in cands if c.exists()), None)
            if hit is None:
                raise DataError(f"no material mask for view '{stem}' in {folder}")
            paths.append(hit)
    if not paths:
        raise DataError(f"no PNG masks in {folder}")
    ids = torch.from_numpy(np.stack([_read_ids(p) for p in paths]).astype(np.int64))  # [n, H, W]
    K = int(ids.max()) if K is None else K
    if int(ids.max()) > K or int(ids.min()) < 0:
        raise DataError(f"material masks in {folder} hold ids outside 0..{K}")
    onehot = torch.zeros(*ids.shape, K + 1, dtype=torch.float32)
    onehot.scatter_(-1, ids.clamp(0, K)[..., None], 1.0)
    return onehot[..., 1:]
