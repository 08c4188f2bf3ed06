"""Hash grid encoding: layout, indexing, torch reference maths, kernel/torch parity (every fast kernel: Warp,
numba), masking, fallback."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from lumisurf.encodings import HashGrid, HashGridConfig, hash_grid_numba
from lumisurf.encodings import hash_grid as hg
from lumisurf.encodings import hash_grid_torch as ref
from lumisurf.encodings import hash_grid_warp as fast
from lumisurf.errors import ConfigError

# 3 dense levels (res 4, 6, 9 -> 125, 343, 1000 rows <= 2^10) and 2 hashed ones (res 13, 20)
SMALL = dict(n_levels=5, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=20)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
HAVE_WARP = fast.missing() is None
needs_warp = pytest.mark.skipif(not HAVE_WARP, reason="warp-lang is not installed (the torch fallback is tested)")
# every fast kernel against the torch twin, on every device it runs on; a kernel that is not installed is skipped
# with the reason (its fallback is tested below)
KERNEL_DEVICES = [
    pytest.param(
        name,
        dev,
        marks=pytest.mark.skipif(hg.GRID_KERNELS.get(name).missing() is not None, reason=f"{name} is not installed"),
    )
    for name in hg.GRID_KERNELS
    for dev in DEVICES
    if dev in hg.GRID_KERNELS.get(name).devices
]


def _grid(impl: str, device="cpu", seed: int = 0, **kw) -> HashGrid:
    torch.manual_seed(seed)
    grid = HashGrid(HashGridConfig(**{**SMALL, **kw}, implementation=impl)).to(device)
    with torch.no_grad():  # larger values than the 1e-4 init so differences are visible
        grid.params.uniform_(-1.0, 1.0)
    return grid


def _twins(device="cpu", impl: str = "warp", **kw) -> tuple[HashGrid, HashGrid]:
    g_torch, g_fast = _grid("torch", device, **kw), _grid(impl, device, **kw)
    g_fast.load_state_dict(g_torch.state_dict())
    return g_torch, g_fast


def _points(n: int, device="cpu", seed: int = 1, spread: float = 1.2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, 3, generator=gen) * 2 - 1) * spread).to(device)


def _grads(out, inputs, upstream):
    """Gradients of sum(out_i * upstream_i) w.r.t. inputs."""
    loss = sum((o * u).sum() for o, u in zip(out, upstream))
    return torch.autograd.grad(loss, inputs)


# ---------------------------------------------------------------- layout and indexing
def test_layout_resolutions_and_dense_then_hashed():
    grid = _grid("torch")
    b = math.exp((math.log(20) - math.log(4)) / 4)
    assert grid.resolutions == [math.floor(4 * b**l + 1e-6) for l in range(5)] == [4, 5, 8, 13, 20]
    assert grid.hashed_levels == [(r + 1) ** 3 > 1024 for r in grid.resolutions] == [False] * 3 + [True] * 2
    assert grid.layout.sizes == (125, 216, 729, 1024, 1024)
    assert grid.layout.offsets == (0, 125, 341, 1070, 2094)
    assert tuple(grid.params.shape) == (3118, 2) and grid.output_dim == 10
    fresh = HashGrid(HashGridConfig(**SMALL))
    assert fresh.params.abs().max() <= 1e-4 and fresh.params.abs().max() > 0
    assert HashGrid(HashGridConfig(**{**SMALL, "growth_factor": 2.0})).resolutions == [4, 8, 16, 32, 64]


def test_default_config_matches_instant_ngp():
    cfg = HashGridConfig(implementation="torch")
    grid = HashGrid(cfg)
    assert grid.resolutions[0] == 16 and grid.resolutions[-1] == 2048 and grid.output_dim == 32
    assert grid.params.shape[1] == 2 and max(grid.layout.sizes) == 2**19


@pytest.mark.parametrize(
    "bad",
    [
        dict(n_levels=0),
        dict(log2_table_size=0),
        dict(bound=0.0),
        dict(max_resolution=2),
        dict(growth_factor=0.5),
        dict(implementation="cuda"),
    ],
)
def test_config_errors(bad):
    with pytest.raises(ConfigError):
        HashGrid(HashGridConfig(**{**SMALL, **bad}))


def test_corner_rows_dense_and_hash_formulas():
    layout = _grid("torch").layout
    res, off, hashed = ref._level_tensors(layout, 5, torch.device("cpu"))
    i0 = torch.tensor([[[1, 2, 3]] * 5])  # one point, same cell origin on every level
    rows = ref.corner_rows(i0, res, off, hashed, 10)[0]  # [5, 8]
    for lvl, r in enumerate(layout.resolutions):
        for c in range(8):
            ix, iy, iz = 1 + (c & 1), 2 + ((c >> 1) & 1), 3 + ((c >> 2) & 1)
            if layout.hashed[lvl]:
                local = (ix ^ ((iy * 2654435761) % 2**32) ^ ((iz * 805459861) % 2**32)) % 1024
            else:
                local = ix + (r + 1) * (iy + (r + 1) * iz)
            assert rows[lvl, c].item() == layout.offsets[lvl] + local


@pytest.mark.parametrize("impl", ["torch", "warp", "numba", "auto"])
def test_dense_vertex_returns_written_feature(impl):
    grid = _grid(impl)
    lvl, res, vtx = 1, grid.resolutions[1], (2, 3, 4)
    row = grid.layout.offsets[lvl] + vtx[0] + (res + 1) * (vtx[1] + (res + 1) * vtx[2])
    with torch.no_grad():
        grid.params.zero_()
        grid.params[row] = torch.tensor([0.7, -0.3])
    at = torch.tensor([[2 * v / res - 1 for v in vtx]])
    beside = at + torch.tensor([[2.0 / res, 0.0, 0.0]])  # next vertex along x
    out = grid(torch.cat([at, beside]))  # [2, 10]
    assert torch.allclose(out[0, 2:4], torch.tensor([0.7, -0.3]), atol=1e-6)
    assert out[1].abs().max() < 1e-6 and out[0, :2].abs().max() == 0 and out[0, 4:].abs().max() == 0


# ---------------------------------------------------------------- torch reference maths
def test_reference_gradcheck_float64():
    layout = ref.make_layout([2, 5], 6)  # one dense level (27 rows), one hashed (64 rows)
    assert layout.hashed == (False, True)
    gen = torch.Generator().manual_seed(2)
    table = torch.rand(layout.total_entries, 2, generator=gen, dtype=torch.float64).requires_grad_()
    x = (torch.rand(4, 3, generator=gen, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    enc = lambda xx, tt: ref.hash_encode_with_grad_torch(xx, tt, layout, 1.0)  # noqa: E731
    assert torch.autograd.gradcheck(enc, (x, table), eps=1e-7, atol=1e-5)
    assert torch.autograd.gradgradcheck(
        lambda xx: ref.hash_encode_torch(xx, table.detach(), layout), (x,), eps=1e-7, atol=1e-5
    )


def test_analytic_jacobian_matches_central_differences():
    grid = _grid("torch").double()
    x = _points(64, spread=0.95).double()
    eps = 1e-6
    feat, jac = grid.forward_with_grad(x)  # [64, 10], [64, 10, 3]
    res = torch.tensor(grid.resolutions, dtype=torch.int64)
    inside = torch.ones(64, dtype=torch.bool)
    for d in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[d] = eps
        fd = (grid(x + e) - grid(x - e)) / (2 * eps)
        same_cell = (ref.grid_coords(x + e, res, 1.0)[0] == ref.grid_coords(x - e, res, 1.0)[0]).all(-1).all(-1)
        inside &= same_cell
        assert torch.allclose(jac[same_cell, :, d], fd[same_cell], atol=1e-5)
    assert inside.sum() > 50 and torch.allclose(feat, grid(x))


def test_clamping_outside_the_cube():
    grid = _grid("torch")
    x = torch.tensor([[1.5, 0.2, -0.3], [-2.0, 0.2, 3.0]], requires_grad=True)
    feat, jac = grid.forward_with_grad(x)
    assert torch.allclose(feat, grid(x.detach().clamp(-1, 1)))
    assert jac[0, :, 0].abs().max() == 0 and jac[1, :, 0].abs().max() == 0 and jac[1, :, 2].abs().max() == 0
    (gx,) = torch.autograd.grad(feat.sum(), x)
    assert gx[0, 0] == 0 and gx[1, 0] == 0 and gx[1, 2] == 0 and gx[0, 1] != 0


# ---------------------------------------------------------------- fast kernel / torch parity
@pytest.mark.parametrize("impl,device", KERNEL_DEVICES)
@pytest.mark.parametrize("threads", [1, 3])  # CPU kernels split levels over threads (Warp: concurrent launches)
def test_kernel_forward_backward_parity(impl, device, threads, monkeypatch):
    monkeypatch.setattr(fast, "_CPU_THREADS", 1)
    monkeypatch.setattr(hash_grid_numba, "_THREADS", None)
    fast.set_cpu_threads(threads)
    hash_grid_numba.set_cpu_threads(threads)
    g_torch, g_fast = _twins(device, impl)
    x = _points(3000, device)
    outs, grads = [], []
    up = torch.randn(3000, 10, generator=torch.Generator().manual_seed(5)).to(device)
    for grid in (g_torch, g_fast):
        xr = x.clone().requires_grad_()
        out = grid(xr)
        assert out.device == x.device and out.shape == (3000, 10)
        outs.append(out)
        grads.append(_grads([out], [xr, grid.params], [up]))
    if impl == "warp":
        assert len(fast._level_groups(5, x.device)) == (threads if device == "cpu" else 1)
    assert hg.kernel_status(impl, device) is None, hg.kernel_status(impl, device)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-3, rtol=1e-4)  # d/dx ~ res * table
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5)


@pytest.mark.parametrize("impl,device", KERNEL_DEVICES)
@pytest.mark.parametrize("n_features", [1, 2, 4])  # the numba kernels take features in pairs (odd F: a half pair)
def test_kernel_forward_with_grad_parity(impl, device, n_features):
    g_torch, g_fast = _twins(device, impl, n_features=n_features)
    x = _points(2000, device, seed=7)
    gen = torch.Generator().manual_seed(8)
    cols = 5 * n_features
    up = [torch.randn(2000, cols, generator=gen).to(device), torch.randn(2000, cols, 3, generator=gen).to(device)]
    res = []
    for grid in (g_torch, g_fast):
        xr = x.clone().requires_grad_()
        feat, jac = grid.forward_with_grad(xr)
        res.append((feat, jac, *_grads([feat, jac], [xr, grid.params], up)))
    (f0, j0, gx0, gt0), (f1, j1, gx1, gt1) = res
    assert torch.allclose(f0, f1, atol=1e-5) and torch.allclose(j0, j1, atol=1e-4, rtol=1e-5)
    assert torch.allclose(gt0, gt1, atol=1e-4, rtol=1e-5)
    assert torch.allclose(gx0, gx1, atol=1e-2, rtol=1e-4)  # includes the second-derivative term
    assert gx1.abs().max() > 1.0


@pytest.mark.parametrize("impl,device", KERNEL_DEVICES)
def test_kernel_eikonal_gradient_matches_double_backward(impl, device):
    """The training path: an eikonal loss through dfeat_dx of the fast kernel == torch's double backward."""
    g_torch, g_fast = _twins(device, impl)
    x = _points(500, device, spread=0.9)
    direction = torch.randn(10, generator=torch.Generator().manual_seed(3)).to(device)
    xr = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(g_torch(xr) @ direction, xr, torch.ones(500, device=device), create_graph=True)
    ((gx.norm(dim=-1) - 1) ** 2).mean().backward()
    _, jac = g_fast.forward_with_grad(x)
    ((torch.einsum("nkd,k->nd", jac, direction).norm(dim=-1) - 1) ** 2).mean().backward()
    assert torch.allclose(g_torch.params.grad, g_fast.params.grad, atol=1e-4, rtol=1e-4)


def test_auto_takes_the_fastest_kernel_that_runs(monkeypatch):
    """auto: numba on the CPU, else Warp; Warp on CUDA; a named kernel is the only choice; torch: none."""
    assert hg._candidates("auto", "cpu") == ("numba", "warp") and hg._candidates("auto", "cuda") == ("warp",)
    assert hg._candidates("torch", "cpu") == () and hg._candidates("numba", "cuda") == ("numba",)
    g_torch, g_auto = _twins(impl="auto")
    calls = []
    for name in ("numba", "warp"):
        kernel = hg.GRID_KERNELS.get(name)
        spy = (lambda n, f: lambda *a: calls.append(n) or f(*a))(name, kernel.apply)
        monkeypatch.setitem(hg.GRID_KERNELS._items, name, hg.GridKernel(spy, kernel.missing, kernel.devices))
    x = _points(300)
    assert torch.allclose(g_auto(x), g_torch(x), atol=1e-5)
    expected = next((n for n in ("numba", "warp") if hg.GRID_KERNELS.get(n).missing() is None), None)
    assert calls == ([expected] if expected else [])
    calls.clear()
    g_auto.double()(x.double())  # float64: the torch twin, silently
    assert calls == []


@pytest.mark.parametrize("broken", ["numba", "warp"])
def test_kernel_failure_falls_back_with_one_warning(broken, monkeypatch):
    """A kernel that fails (compile or launch) is remembered, named in one warning, and the call goes on to the
    next choice: under auto numba -> Warp -> torch; a named kernel -> torch."""
    g_torch, g_named = _twins(impl=broken)
    _, g_auto = _twins(impl="auto")
    x = _points(100)

    def fail(*args, **kwargs):
        raise RuntimeError("simulated compile error")

    monkeypatch.setattr(hg, "_FAILURES", {})
    monkeypatch.setattr(hg, "_WARNED", set())
    monkeypatch.setitem(hg.GRID_KERNELS._items, broken, hg.GridKernel(fail, lambda: None, ("cpu", "cuda")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out1, out2 = g_named(x), g_named.forward_with_grad(x)[0]
        out3 = g_auto(x)
    assert len(caught) == 1 and "simulated compile error" in str(caught[0].message), [str(c.message) for c in caught]
    assert broken in str(caught[0].message)
    assert "simulated" in hg.kernel_status(broken, "cpu")
    assert (
        torch.allclose(out1, g_torch(x), atol=1e-5)
        and torch.allclose(out2, out1)
        and torch.allclose(out3, out1, atol=1e-5)
    )


def test_missing_kernel_falls_back_with_one_line(monkeypatch):
    """A kernel that is not installed: auto takes the next one and says so once."""
    g_torch, g_auto = _twins(impl="auto")
    monkeypatch.setattr(hg, "_FAILURES", {})
    monkeypatch.setattr(hg, "_WARNED", set())
    numba_kernel = hg.GRID_KERNELS.get("numba")
    monkeypatch.setitem(
        hg.GRID_KERNELS._items,
        "numba",
        hg.GridKernel(numba_kernel.apply, lambda: "numba import failed: simulated", ("cpu",)),
    )
    x = _points(100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = g_auto(x)
        g_auto(x)
    msgs = [str(c.message) for c in caught]
    assert len(msgs) == 1 and "numba" in msgs[0] and "simulated" in msgs[0], msgs
    assert ("using warp" if HAVE_WARP else "torch reference") in msgs[0]
    assert torch.allclose(out, g_torch(x), atol=1e-5)


@pytest.mark.parametrize("impl", ["torch", "warp", "numba"])
def test_active_level_masking(impl):
    grid = _grid(impl)
    x = _points(500)
    full = grid(x)
    grid.set_active_levels(2)
    part = grid(x)
    assert torch.equal(part[:, :4], full[:, :4]) and part[:, 4:].abs().max() == 0
    feat, jac = grid.forward_with_grad(x)
    assert feat[:, 4:].abs().max() == 0 and jac[:, 4:].abs().max() == 0
    (feat.sum() + jac.sum()).backward()
    dense_rows = grid.layout.offsets[2]
    assert grid.params.grad[dense_rows:].abs().max() == 0 and grid.params.grad[:dense_rows].abs().max() > 0
    grid.set_active_levels(0)
    assert grid(x).abs().max() == 0
    grid.set_active_levels(99)
    assert grid.active_levels == 5 and torch.equal(grid(x), full)


def test_batch_shape_and_float64_inputs():
    g_torch, g_warp = _twins()
    x = _points(24).reshape(2, 4, 3, 3)
    assert g_warp(x).shape == (2, 4, 3, 10)
    f, j = g_warp.forward_with_grad(x)
    assert f.shape == (2, 4, 3, 10) and j.shape == (2, 4, 3, 10, 3)
    # float64 goes through the torch twin (the kernels are float32 only)
    assert torch.allclose(g_warp.double()(x.double()), g_torch.double()(x.double()))
