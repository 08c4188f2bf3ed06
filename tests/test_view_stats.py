"""What the photos say about surface points (``train/view_stats.py``): visibility, median color, spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumisurf.data.synthetic import look_at_cameras
from lumisurf.train.view_stats import ViewStats, view_statistics, visible_views

R = 0.5


def sphere(p: torch.Tensor) -> torch.Tensor:
    return p.norm(dim=-1) - R


def _cams(eyes) -> object:
    return look_at_cameras(np.asarray(eyes, dtype=np.float64), 32, 32, fov_deg=40.0)


def test_visibility_faces_and_occlusion():
    cams = _cams([[0, 3.0, 0], [0, -3.0, 0], [3.0, 0, 0]])
    p = torch.tensor([[0.0, R, 0.0], [R, 0.0, 0.0]])  # the sphere's +y and +x points
    _, seen = visible_views(sphere, 200.0, cams, torch.arange(3), p, p / R)
    # the +y camera sees the +y point, the -y camera looks at its back, the +x camera sees it at grazing angle
    assert seen.tolist() == [[True, False, False], [False, False, True]]
    blocker = lambda x: torch.minimum(sphere(x), (x - torch.tensor([0.0, 0.8, 0.0])).norm(dim=-1) - 0.15)  # noqa: E731
    _, seen = visible_views(blocker, 200.0, cams, torch.arange(3), p, p / R)
    assert seen.tolist() == [[False, False, False], [False, False, True]]  # a ball between point and camera


def test_median_color_and_spread_by_hand():
    eyes = [[3.0 * np.sin(a), 3.0 * np.cos(a), 0.3] for a in np.linspace(-0.3, 0.3, 5)]
    cams = _cams(eyes)
    lum = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])  # every view a flat grey of its own
    images = lum[:, None, None, None].expand(5, 32, 32, 3).clone()
    p = torch.tensor([[0.0, R, 0.0]])
    stats = view_statistics(sphere, 200.0, cams, images, p, p / R, max_views=5, min_views=1)
    assert stats.views.tolist() == [5]
    assert torch.allclose(stats.color, torch.full((1, 3), 0.3), atol=1e-5)
    assert stats.spread.item() == pytest.approx(0.46 - 0.14, abs=1e-4)  # linear-interpolated 90th - 10th
    assert stats.chroma().sum().item() == pytest.approx(0.9 / 0.93, abs=1e-4)
    masks = torch.ones(5, 32, 32)
    masks[4] = 0.0  # the last view's mask says background: it does not count
    stats = view_statistics(sphere, 200.0, cams, images, p, p / R, masks, max_views=5, min_views=1)
    assert stats.views.tolist() == [4] and stats.color[0, 0].item() == pytest.approx(0.2, abs=1e-5)


def test_unseen_points_take_the_median_of_the_seen():
    stats = ViewStats(
        torch.tensor([[0.2] * 3, [0.4] * 3, [0.9] * 3]), torch.tensor([0.1, 0.3, 5.0]), torch.tensor([4, 6, 0])
    )
    from lumisurf.train.view_stats import _fill_unseen

    filled = _fill_unseen(stats, 3)
    assert filled.spread.tolist() == pytest.approx([0.1, 0.3, 0.1])  # torch median of two: the lower
    assert filled.relative_spread(floor=0.0, cap=1.0).tolist() == pytest.approx([0.5, 0.75, 0.5])
    assert view_statistics(
        sphere, 200.0, _cams([[0, 0, 3.0]]), torch.zeros(1, 32, 32, 3), torch.zeros(0, 3), torch.zeros(0, 3)
    ).color.shape == (0, 3)  # no points
