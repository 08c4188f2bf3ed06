"""Gated resolution experts (hash SDF): the cheap coarse-level expert is distilled from the full field, answers
proposal queries far from the surface, and hands the near ones to every level."""

from __future__ import annotations

import pytest
import torch

from lumisurf.config import ExpertsConfig, SDFConfig
from lumisurf.encodings.hash_grid import HashGridConfig
from lumisurf.errors import ConfigError
from lumisurf.fields.base import build_sdf

GRID = HashGridConfig(n_levels=6, n_features=2, log2_table_size=12, base_resolution=4, max_resolution=64)


def _field(**experts):
    torch.manual_seed(0)
    cfg = SDFConfig(
        backend="hash",
        hidden=32,
        layers=2,
        skip_in=(),
        multires=0,
        feature_dim=3,
        weight_norm=False,
        normals="analytic",
        grid=GRID,
        experts=ExpertsConfig(**{"enabled": True, "coarse_levels": 3, **experts}),
    )
    return build_sdf(cfg)


def _fit(field, steps: int = 150) -> None:
    """Fit the field to the SDF of a sphere of radius 0.4 (plus its eikonal term) and distil the expert."""
    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.rand(2048, 3, generator=gen) * 1.8 - 0.9
        sdf, _, grad = field.sdf_and_gradient(x, create_graph=True)
        loss = (sdf - (x.norm(dim=-1) - 0.4)).abs().mean() + 0.1 * ((grad.norm(dim=-1) - 1) ** 2).mean()
        loss = loss + field.last_expert_loss
        field.last_expert_loss = None
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_expert_is_distilled_and_answers_only_far_from_the_surface():
    field = _field(margin=0.05).train()
    error_at_start = None
    x = torch.rand(4000, 3, generator=torch.Generator().manual_seed(2)) * 1.8 - 0.9
    with torch.no_grad():
        error_at_start = (field.expert(field.pe(x), field.grid(x)) - field.sdf(x)).abs().mean()
    _fit(field)
    with torch.no_grad():
        full = field.sdf(x)
        coarse = field.expert(field.pe(x), field.grid(x, levels=3))
        proposal = field.sdf_proposal(x)
    assert (coarse - full).abs().mean() < 0.5 * error_at_start  # the distillation worked
    assert 0.0 < float(field.expert.error) < 0.05
    margin = field.expert.gate_margin()
    far = coarse.abs() >= margin
    assert 0.3 < far.float().mean() < 1.0  # the cheap expert answers a good share of the queries ...
    assert torch.equal(proposal[~far], full[~far])  # ... and every query near the surface gets every level
    assert torch.equal(proposal[far], coarse[far])
    assert torch.equal(torch.sign(proposal[far]), torch.sign(full[far]))  # never on the wrong side of the surface
    stats = field.proposal_stats()
    assert stats["expert_coarse"] == pytest.approx(far.float().mean().item())
    field.eval()
    with torch.no_grad():  # extraction, evaluation: the full field only
        assert torch.equal(field.sdf_proposal(x), field.sdf(x))


def test_expert_does_not_shape_the_grid():
    """The distillation's gradient reaches the expert only (its inputs are detached)."""
    field = _field().train()
    x = torch.rand(256, 3) * 1.6 - 0.8
    field.sdf_and_gradient(x, create_graph=True)
    field.last_expert_loss.backward()
    assert field.grid.params.grad is None or not field.grid.params.grad.any()
    assert all(p.grad is not None for p in field.expert.parameters())


def test_expert_config_errors():
    with pytest.raises(ConfigError, match="coarse_levels"):
        _field(coarse_levels=6)
    assert build_sdf(SDFConfig(backend="hash", normals="analytic", grid=GRID)).expert is None
