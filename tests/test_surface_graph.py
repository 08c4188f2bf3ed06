"""Surface kNN graph, crease weights and the exact binary min-cut of the material lift."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lumisurf.train.surface_graph import binary_min_cut, crease_edge_weights, knn_graph, smooth_labels


def _energy(labels, unary, edges, w) -> float:
    return float(unary[np.arange(len(labels)), labels].sum() + (w * (labels[edges[:, 0]] != labels[edges[:, 1]])).sum())


def test_min_cut_hand_chain():
    # a - b - c: a wants 0 strongly, c wants 1 strongly, b mildly prefers 1; a strong a-b edge keeps b with a
    unary = np.array([[0.0, 5.0], [0.6, 0.4], [5.0, 0.0]])
    edges = np.array([[0, 1], [1, 2]])
    assert binary_min_cut(unary, edges, np.array([1.0, 0.1])).tolist() == [0, 0, 1]
    assert binary_min_cut(unary, edges, np.array([0.1, 0.1])).tolist() == [0, 1, 1]  # weak edges: unary wins


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_cut_is_the_exact_minimiser(seed):
    rng = np.random.default_rng(seed)
    P = 8
    unary = rng.uniform(0, 2, (P, 2))
    edges = np.array([(i, j) for i in range(P) for j in range(i + 1, P) if rng.uniform() < 0.4])
    w = rng.uniform(0, 1.5, len(edges))
    best = min(_energy(np.array(lab), unary, edges, w) for lab in itertools.product([0, 1], repeat=P))
    got = _energy(binary_min_cut(unary, edges, w, scale=1e5), unary, edges, w)
    assert got == pytest.approx(best, abs=1e-3)
    with pytest.raises(ValueError):
        binary_min_cut(-unary, edges, w)
    with pytest.raises(ValueError, match="creases"):
        crease_edge_weights(
            torch.zeros(2, 3),
            torch.zeros(2, 3),
            torch.zeros(2, 1, dtype=torch.long),
            torch.ones(2, 1),
            2.0,
            creases="convex",
        )


def test_knn_and_crease_weights():
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]])
    idx, dist = knn_graph(pts, 1)
    assert idx[:, 0].tolist() == [1, 0, 1] and torch.allclose(dist[:, 0], torch.tensor([1.0, 1.0, 2.0]))
    # an inside corner (floor z=0 facing up, wall x=0 facing +x: concave) and an outside one (the top and a
    # side of a box: convex), both with 90 degree normals and neighbours 1.414 apart
    floor, wall = ([1.0, 0, 0], [0, 0, 1.0]), ([0.0, 0, 1], [1.0, 0, 0])
    top, side = ([-1.0, 0, 0], [0, 0, 1.0]), ([0.0, 0, -1], [1.0, 0, 0])
    for (a, b), concave in (((floor, wall), True), ((top, side), False)):
        p = torch.tensor([a[0], b[0]])
        n = torch.tensor([a[1], b[1]])
        i, d = knn_graph(p, 1)
        gauss = math.exp(-1.0)  # the distance is the mean distance
        w = crease_edge_weights(p, n, i, d, sharpness=2.0, creases="concave")
        assert torch.allclose(w[:, 0], torch.full((2,), (0.25 if concave else 1.0) * gauss)), concave
        w = crease_edge_weights(p, n, i, d, sharpness=2.0)  # all creases
        assert torch.allclose(w[:, 0], torch.full((2,), 0.25 * gauss))
    flat = crease_edge_weights(pts, torch.tensor([[0.0, 0, 1]]).expand(3, 3), idx, dist, sharpness=2.0)
    sigma = 4.0 / 3.0
    assert float(flat[2, 0]) == pytest.approx(math.exp(-((2 / sigma) ** 2)), rel=1e-5)


def test_smooth_labels_moves_a_mislabelled_patch_to_its_smooth_surface():
    """A ball resting on a plane; the clustering calls a patch of the plane around the contact 'ball' (a
    shadow) and a band of the ball near the contact 'plane' (a reflection). The cut puts the boundary on the
    crease where they meet."""
    g = torch.Generator().manual_seed(0)
    n_plane, n_ball = 1500, 1500
    xy = torch.rand(n_plane, 2, generator=g) * 2 - 1
    xy = xy[xy.norm(dim=-1) > 0.3]  # the plane under the ball (inside it) is not surface
    n_plane = xy.shape[0]
    plane = torch.cat([xy, torch.zeros(n_plane, 1)], -1)
    dirs = torch.nn.functional.normalize(torch.randn(n_ball, 3, generator=g), dim=-1)
    dirs = dirs[dirs[:, 2] > -0.8]  # the part of the ball above the plane
    ball = dirs * 0.5 + torch.tensor([0.0, 0.0, 0.5 * 0.8])
    pts = torch.cat([plane, ball])
    normals = torch.cat([torch.tensor([[0.0, 0.0, 1.0]]).expand(n_plane, 3), dirs])
    truth = torch.cat([torch.zeros(n_plane, dtype=torch.long), torch.ones(ball.shape[0], dtype=torch.long)])
    p_ball = truth.float() * 0.9 + 0.05
    radial = pts[:, :2].norm(dim=-1)
    shadow = (truth == 0) & (radial < 0.45)
    reflection = (truth == 1) & (pts[:, 2] < 0.25)
    p_ball[shadow] = 0.8
    p_ball[reflection] = 0.2
    probs = torch.stack([1 - p_ball, p_ball], -1)
    before = float((probs.argmax(-1) == truth).float().mean())
    assert before < 0.9
    for creases in ("all", "concave"):
        labels = smooth_labels(pts, normals, probs, k=16, sharpness=8.0, smoothness=8.0, floor=0.1, creases=creases)
        assert float((labels == truth).float().mean()) > 0.97, creases
