"""Spherical harmonics encoding, training schedules and the hash-grid total-variation regulariser."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lumisurf.encodings import HashGrid, HashGridConfig
from lumisurf.encodings.spherical_harmonics import SHEncoding, sh_bands, sh_basis, sh_orthonormality_error
from lumisurf.losses.regularizers import grid_tv_loss
from lumisurf.train.schedules import CosAnnealSchedule, FDStepSchedule, LevelSchedule, WarmupCosineLR

C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
C1 = math.sqrt(3.0 / (4.0 * math.pi))


# ---------------------------------------------------------------- spherical harmonics
@pytest.mark.parametrize("degree,n", [(4, 100_000), (5, 200_000)])
def test_sh_monte_carlo_orthonormality(degree, n):
    assert sh_orthonormality_error(degree, n=n) < 0.02


def test_sh_orthonormal_by_quadrature():
    """Gauss-Legendre in z x uniform azimuth is exact for these polynomials: Gram == I to round-off."""
    z, wz = np.polynomial.legendre.leggauss(12)
    phi = np.arange(24) * (2 * np.pi / 24)
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(1 - zz**2)
    d = torch.tensor(np.stack([s * np.cos(pp), s * np.sin(pp), zz], -1).reshape(-1, 3))
    w = torch.tensor(np.repeat(wz, 24) * (2 * np.pi / 24))  # sums to 4 pi
    y = sh_basis(d, 5)  # [N, 25] float64
    gram = y.T @ (w[:, None] * y)
    assert torch.allclose(gram, torch.eye(25, dtype=torch.float64), atol=1e-12)


def test_sh_bands_equal_the_hand_written_basis_and_are_orthonormal_to_band_16():
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=-1)
    assert torch.allclose(sh_bands(d, (0, 1, 2, 3, 4)), sh_basis(d, 5), atol=1e-13)
    assert torch.allclose(sh_bands(d, (2, 0)), torch.cat([sh_basis(d, 3)[:, 4:], sh_basis(d, 1)], -1), atol=1e-13)
    # Gauss-Legendre in z (20 nodes: exact to degree 39) x 40 azimuths: exact for bands up to 16 (products <= 32)
    z, wz = np.polynomial.legendre.leggauss(20)
    phi = np.arange(40) * (2 * np.pi / 40)
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(1 - zz**2)
    q = torch.tensor(np.stack([s * np.cos(pp), s * np.sin(pp), zz], -1).reshape(-1, 3))
    w = torch.tensor(np.repeat(wz, 40) * (2 * np.pi / 40))
    y = sh_bands(q, (1, 2, 4, 8, 16))  # [N, 67]
    assert y.shape[1] == 3 + 5 + 9 + 17 + 33
    assert torch.allclose(y.T @ (w[:, None] * y), torch.eye(67, dtype=torch.float64), atol=1e-10)
    # float32 input: the Legendre part runs in float64, so band 16 keeps ~6 digits
    assert (sh_bands(q.float(), (16,)).double() - y[:, -33:]).abs().max() < 1e-5
    # Y_16,0 at the pole is sqrt(33 / (4 pi)) (P_l(1) = 1)
    pole = sh_bands(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), (16,))
    assert math.isclose(float(pole[0, 16]), math.sqrt(33 / (4 * math.pi)), rel_tol=1e-9)
    with pytest.raises(ValueError):
        sh_bands(q, ())


def test_sh_bands_gradcheck():
    g = torch.Generator().manual_seed(1)
    d = torch.nn.functional.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=-1)
    d = torch.cat([d, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)]).requires_grad_(True)  # z = 1, x = y = 0
    assert torch.autograd.gradcheck(lambda v: sh_bands(v, (1, 8)), (d,))


def test_sh_shapes_and_hand_values():
    d = F.normalize(torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    for degree in range(1, 6):
        assert sh_basis(d, degree).shape == (2, 5, degree**2)
        enc = SHEncoding(degree)
        assert enc.output_dim == degree**2 and enc(d).shape == (2, 5, degree**2)
    assert torch.allclose(sh_basis(d, 1), torch.full((2, 5, 1), 0.2820948), atol=1e-7)
    assert math.isclose(C0, 0.2820948, abs_tol=1e-7)
    x, y, z = d.unbind(-1)
    band1 = sh_basis(d, 2)[..., 1:4]
    assert torch.allclose(band1, C1 * torch.stack([-y, z, -x], -1), atol=1e-6)
    # lower bands are a prefix of higher ones
    assert torch.equal(sh_basis(d, 5)[..., :9], sh_basis(d, 3))
    # +z: only m = 0 terms survive; Y_20(z) = sqrt(5 / (16 pi)) (3 z^2 - 1)
    up = sh_basis(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), 3)[0]
    want = torch.zeros(9, dtype=torch.float64)
    want[0], want[2], want[6] = C0, C1, math.sqrt(5 / (16 * math.pi)) * 2
    assert torch.allclose(up, want, atol=1e-12)


@pytest.mark.parametrize("degree", [0, 6])
def test_sh_degree_out_of_range(degree):
    with pytest.raises(ValueError):
        sh_basis(torch.tensor([[0.0, 0.0, 1.0]]), degree)


# ---------------------------------------------------------------- schedules
def test_cos_anneal_schedule():
    s = CosAnnealSchedule(0.1)
    assert s.value == 0.0
    assert s.update(0) == 0.0 and s.update(0.025) == pytest.approx(0.25) and s.update(0.1) == 1.0
    assert s.update(0.5) == 1.0 and s.value == 1.0
    assert CosAnnealSchedule(0).value == 1.0 and CosAnnealSchedule(0).update(0) == 1.0


def test_warmup_cosine_lr():
    opt = SimpleNamespace(param_groups=[{"lr": 1.0}, {"lr": 0.1}])  # what the schedule touches
    s = WarmupCosineLR(opt, warmup=0.1, min_factor=0.1)  # no step floor: progress alone
    cases = {0.0: 0.0, 0.05: 0.5, 0.1: 1.0, 0.55: 0.55, 1.0: 0.1, 0.325: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))}
    for p, factor in cases.items():
        assert math.isclose(s.update(p, step=10**6), factor, abs_tol=1e-12), p
        assert math.isclose(opt.param_groups[0]["lr"], factor, abs_tol=1e-12)
        assert math.isclose(opt.param_groups[1]["lr"], 0.1 * factor, abs_tol=1e-12)
    assert s.factor == cases[0.325]  # the last update
    no_warmup = WarmupCosineLR(SimpleNamespace(param_groups=[{"lr": 2.0}]), warmup=0, min_factor=0.0)
    assert no_warmup.update(0, 0) == 1.0 and math.isclose(no_warmup.update(0.5, 0), 0.5, abs_tol=1e-12)


def test_warmup_has_a_floor_in_steps_and_the_guard_scale():
    opt = SimpleNamespace(param_groups=[{"lr": 1.0}])
    s = WarmupCosineLR(opt, warmup=0.01, min_factor=0.1, min_steps=100)
    # a slow first stretch (progress 0.2 after 10 steps) must not skip the warm-up
    assert math.isclose(s.update(0.2, step=10), 0.1, abs_tol=1e-12)
    assert math.isclose(s.update(0.2, step=100), s.cosine(0.2), abs_tol=1e-12)
    s.scale = 0.5  # the divergence guard halves the rate
    assert math.isclose(s.update(0.2, step=100), 0.5 * s.cosine(0.2), abs_tol=1e-12)
    # the minimum is reached at the end of the budget, not before: > min until p = 1
    s.scale = 1.0
    assert s.update(0.95, step=10**4) > 0.1 + 1e-3 and math.isclose(s.update(1.0, step=10**4), 0.1)


def test_level_schedule():
    s = LevelSchedule(start=2, until=0.5, n_levels=4)
    assert s.value == 2
    assert [s.update(p) for p in (0, 0.24, 0.25, 0.49, 0.5, 0.75, 1.0)] == [2, 2, 3, 3, 4, 4, 4]
    assert LevelSchedule(2, 0, 4).update(0) == 4 and LevelSchedule(2, 0, 4).value == 4
    assert LevelSchedule(9, 0.5, 4).value == 4


def test_fd_step_schedule_exp():
    s = FDStepSchedule("exp", 1e-2, 1e-4, resolutions=None)
    assert s.value == 1e-2
    assert math.isclose(s.update(0), 1e-2)
    assert math.isclose(s.update(0.5), 1e-3, rel_tol=1e-9)  # geometric midpoint
    assert math.isclose(s.update(0.25), math.sqrt(1e-2 * 1e-3), rel_tol=1e-9)
    assert math.isclose(s.update(1.0), 1e-4, rel_tol=1e-9)


def test_fd_step_schedule_grid():
    res = [4, 10, 25, 64]
    s = FDStepSchedule("grid", 5e-3, 0.05, resolutions=res)
    got = [s.update(0, active_levels=k) for k in (1, 2, 3, 4)]
    assert np.allclose(got, [0.5, 0.2, 0.08, 0.05])  # 2 / res, the last floored at end = 0.05 > 2 / 64
    assert s.update(0) == 0.05  # None: all levels
    fine = FDStepSchedule("grid", 5e-3, 1e-4, resolutions=res, bound=2.0)
    assert math.isclose(fine.update(0.07, None), 4.0 / 64) and math.isclose(fine.update(0.07, 1), 1.0)
    # grid mode without a grid (MLP backend) falls back to the exp schedule
    assert math.isclose(FDStepSchedule("grid", 1e-2, 1e-4, None).update(0.5), 1e-3)


def test_training_clock():
    from lumisurf.train.progress import TrainingClock

    steps = TrainingClock(max_steps=200)
    assert steps.progress(50, elapsed=1e6) == 0.25 and not steps.done(199, 1e6) and steps.done(200, 0)
    timed = TrainingClock(max_steps=10**6, budget_seconds=300.0)
    assert timed.progress(10, elapsed=150.0) == 0.5  # the clock, not the step count
    assert timed.progress(10, elapsed=400.0) == 1.0 and timed.done(10, 300.0)
    assert timed.estimated_total_steps(100, 30.0) == 1000
    assert TrainingClock(max_steps=100, budget_seconds=300.0).progress(80, 30.0) == 0.8  # whichever is further


# ---------------------------------------------------------------- grid total variation
def _tv_grid() -> HashGrid:
    # levels res 4, 10 dense (125, 1331 rows), 25, 64 hashed (2^12 rows)
    cfg = HashGridConfig(
        n_levels=4, n_features=2, log2_table_size=12, base_resolution=4, max_resolution=64, implementation="torch"
    )
    return HashGrid(cfg)


def test_grid_tv_zero_for_constant_and_hand_value_for_a_ramp():
    grid = _tv_grid()
    assert grid.hashed_levels == [False, False, True, True]
    with torch.no_grad():
        grid.params.fill_(0.3)
    assert grid_tv_loss(grid).item() == 0.0
    # level 0: feature = a * ix (a ramp along x), level 1 constant: one of six axis terms is a^2
    a = 0.2
    n = grid.resolutions[0] + 1
    rows = torch.arange(n**3)
    with torch.no_grad():
        grid.params[grid.level_slice(0)] = (a * (rows % n)).float()[:, None].expand(-1, 2)
        grid.params[grid.level_slice(2)].normal_()  # hashed levels do not count
    assert math.isclose(grid_tv_loss(grid).item(), a * a / 6, rel_tol=1e-5)
    grid.set_active_levels(1)  # only level 0: three axis terms
    assert math.isclose(grid_tv_loss(grid).item(), a * a / 3, rel_tol=1e-5)


def test_grid_tv_noise_and_gradient_only_on_dense_levels():
    grid = _tv_grid()
    with torch.no_grad():
        grid.params.uniform_(-1, 1)
    loss = grid_tv_loss(grid)
    assert loss.item() > 0.1  # E[(u - u')^2] = 2/3 for u ~ U(-1, 1)
    loss.backward()
    dense_end = grid.layout.offsets[2]
    assert (grid.params.grad[:dense_end] != 0).float().mean() > 0.9
    assert grid.params.grad[dense_end:].abs().max() == 0
    grid.params.grad = None
    grid.set_active_levels(0)  # nothing active: zero, still differentiable
    zero = grid_tv_loss(grid)
    assert zero.item() == 0.0 and zero.requires_grad
