"""A neighbourhood graph over surface points and a binary min-cut labelling on it (material lift).

Energy of a labelling l in {0, 1}^P over points with unary costs U [P, 2] and graph edges (i, j) of
weight w_ij >= 0 (Potts):  E(l) = sum_i U[i, l_i] + sum_(i,j) w_ij [l_i != l_j].
It is submodular, so one s-t minimum cut gives the exact minimiser (Boykov & Jolly 2001); we solve it with
SciPy's Dinic max-flow on integer capacities (costs scaled by ``scale`` and rounded).

Edge weights fall across creases: w_ij = c_ij exp(-(|x_i - x_j| / sigma)^2) with c_ij = ((1 + n_i.n_j) / 2)^sharpness,
so a label change is cheap where the surface folds (where material boundaries of real objects tend to sit: a
ball resting on a box, a handle joining a body) and expensive on smooth surface. ``creases="concave"`` keeps
the fall only for concave pairs, (n_j - n_i).(x_j - x_i) < 0 (the minima rule of part perception; LCCP, Stein
et al. 2014), so the convex edges of one part (a box's faces) stay together.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def knn_graph(points: Tensor, k: int, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """The k nearest neighbours of each point (itself excluded): indices [P, k] and distances [P, k]."""
    idx, dist = [], []
    for i in range(0, points.shape[0], chunk):
        d = torch.cdist(points[i : i + chunk], points)
        top = d.topk(min(k + 1, points.shape[0]), largest=False)
        idx.append(top.indices[:, 1:])
        dist.append(top.values[:, 1:])
    return torch.cat(idx), torch.cat(dist)


def crease_edge_weights(
    points: Tensor, normals: Tensor, idx: Tensor, dist: Tensor, sharpness: float, creases: str = "all"
) -> Tensor:
    """w [P, k] of the module docstring; points [P, 3], normals [P, 3] unit, idx / dist from :func:`knn_graph`;
    sigma = the mean neighbour distance; ``creases``: "all" or "concave"."""
    cos = (normals[:, None] * normals[idx]).sum(-1).clamp(-1.0, 1.0)
    crease = (0.5 * (1.0 + cos)) ** sharpness
    if creases == "concave":
        concave = ((normals[idx] - normals[:, None]) * (points[idx] - points[:, None])).sum(-1) < 0
        crease = torch.where(concave, crease, torch.ones_like(cos))
    elif creases != "all":
        raise ValueError(f"crease_edge_weights: creases must be 'all' or 'concave', got '{creases}'")
    sigma = dist.mean().clamp_min(1e-12)
    return crease * torch.exp(-((dist / sigma) ** 2))


def binary_min_cut(unary: np.ndarray, edges: np.ndarray, weights: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """Exact minimiser of the Potts energy: unary [P, 2] costs >= 0, edges [E, 2], weights [E] >= 0.

    Returns labels [P] in {0, 1}. Label 0 = the source side of the cut: a node pays U[i, 1] when cut from
    the source (t-link source -> i) and U[i, 0] when cut from the sink (i -> sink).
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    unary, weights = np.asarray(unary, np.float64), np.asarray(weights, np.float64)
    if (unary < 0).any() or (weights < 0).any():
        raise ValueError("binary_min_cut: costs and weights must be >= 0")
    P = unary.shape[0]
    src, sink = P, P + 1
    q = lambda a: np.round(a * scale).astype(np.int64)  # noqa: E731
    rows = np.concatenate([np.full(P, src), np.arange(P), edges[:, 0], edges[:, 1]])
    cols = np.concatenate([np.arange(P), np.full(P, sink), edges[:, 1], edges[:, 0]])
    cap = np.concatenate([q(unary[:, 1]), q(unary[:, 0]), q(weights), q(weights)])
    if cap.max(initial=0) >= np.iinfo(np.int32).max:
        raise ValueError("binary_min_cut: costs too large for int32 capacities; lower scale")
    C = csr_matrix((cap.astype(np.int32), (rows, cols)), shape=(P + 2, P + 2))
    C.sum_duplicates()
    flow = maximum_flow(C, src, sink, method="dinic").flow
    residual = (C - flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reach = breadth_first_order(residual, src, directed=True, return_predecessors=False)
    labels = np.ones(P, np.int64)
    labels[reach[reach < P]] = 0
    return labels


def smooth_labels(
    points: Tensor,
    normals: Tensor,
    probs: Tensor,
    k: int,
    sharpness: float,
    smoothness: float,
    floor: float,
    creases: str = "all",
) -> Tensor:
    """Two-material labels [P] (0/1) of surface points from soft cluster probabilities probs [P, 2]:
    unary -log(max(p, floor)), crease-weighted kNN Potts term times ``smoothness``, solved by min-cut."""
    idx, dist = knn_graph(points, k)
    w = crease_edge_weights(points, normals, idx, dist, sharpness, creases) * smoothness
    edges = torch.stack(
        [torch.arange(points.shape[0])[:, None].expand_as(idx).reshape(-1).to(idx), idx.reshape(-1)], -1
    )
    unary = -np.log(np.clip(probs.detach().cpu().double().numpy(), floor, 1.0))
    labels = binary_min_cut(unary, edges.cpu().numpy(), w.reshape(-1).cpu().double().numpy())
    return torch.from_numpy(labels).to(points.device)
