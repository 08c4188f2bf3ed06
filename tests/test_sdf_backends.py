"""Hash-grid SDF backends (hash, hybrid): analytic / finite-difference / autograd gradients agree,
the eikonal loss trains the same parameters either way, FD Laplacian, config errors, geometric init,
coarse-to-fine level masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.config import SDFConfig
from lumisurf.encodings import HashGridConfig
from lumisurf.encodings import hash_grid_torch as ref
from lumisurf.errors import ConfigError
from lumisurf.fields.base import SDFField, build_sdf

# levels res 4, 10, 25, 64: two dense (125, 1331 rows <= 2^12) and two hashed
GRID = dict(n_levels=4, n_features=2, log2_table_size=12, base_resolution=4, max_resolution=64)
BACKENDS = ["hash", "hybrid"]
IMPLS = ["torch", "warp", "numba"]


def _cfg(backend: str, impl: str = "torch", normals: str = "autograd", **kw) -> SDFConfig:
    base = dict(hidden=32, layers=3, skip_in=(), multires=2, feature_dim=4, weight_norm=False)
    return SDFConfig(
        backend=backend, normals=normals, grid=HashGridConfig(**GRID, implementation=impl), **{**base, **kw}
    )


def _field(backend: str, impl: str, normals: str, seed: int = 0) -> SDFField:
    """A small field whose grid matters: table in +-0.1 and the decoder weights that read it not zero
    (geometric init zeroes the hash decoder's non-xyz inputs, the hybrid zeroes its residual head)."""
    torch.manual_seed(seed)
    field = build_sdf(_cfg(backend, impl, normals))
    with torch.no_grad():
        field.grid.params.uniform_(-0.1, 0.1)
        if backend == "hash":
            field.layers[0].weight[:, 3:].normal_(0.0, 0.1)
        else:
            field.residual[-1].weight.normal_(0.0, 0.5)
            field.residual[-1].bias.fill_(0.05)
    return field


def _torch_twin(field: SDFField, backend: str) -> SDFField:
    """Same parameters, torch grid implementation, autograd normals (the reference)."""
    twin = build_sdf(_cfg(backend, "torch", "autograd"))
    twin.load_state_dict(field.state_dict())
    return twin


def _points(n: int, seed: int = 1, spread: float = 0.9) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=gen) * 2 - 1) * spread


def _away_from_faces(x: Tensor, resolutions: list[int], margin: float) -> Tensor:
    """[N] True where every level's cell coordinate is more than ``margin`` (world units) from a face,
    so central differences with step < margin do not straddle a trilinear kink."""
    res = torch.tensor(resolutions, dtype=torch.int64)
    _, frac, _ = ref.grid_coords(x.double(), res, 1.0)  # [N, L, 3] in cell units
    m = margin * res.double()[None, :, None] / 2.0
    return ((frac > m) & (frac < 1 - m)).all(-1).all(-1)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_analytic_gradient_equals_torch_autograd(backend, impl):
    field = _field(backend, impl, "analytic")
    twin = _torch_twin(field, backend)
    x = _points(256)
    sdf_a, feat_a, grad_a = field.sdf_and_gradient(x, create_graph=False)
    sdf_r, feat_r, grad_r = twin.sdf_and_gradient(x, create_graph=False)
    assert grad_a.shape == (256, 3) and feat_a.shape == feat_r.shape == (256, field.feature_dim)
    assert not grad_a.requires_grad and not sdf_a.requires_grad
    assert torch.allclose(sdf_a, sdf_r, atol=1e-5) and torch.allclose(feat_a, feat_r, atol=1e-5)
    assert torch.allclose(grad_a, grad_r, atol=1e-4)
    # the grid really contributes: zeroing the table changes the gradient by much more than the tolerance
    with torch.no_grad():
        twin.grid.params.zero_()
    assert (twin.sdf_and_gradient(x, create_graph=False)[2] - grad_r).abs().max() > 1e-2


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_finite_difference_gradient_close_to_autograd(backend, impl):
    field = _field(backend, impl, "finite_difference")
    field.set_progress(0, fd_eps=1e-4)
    assert field.fd_eps == 1e-4
    twin = _torch_twin(field, backend)
    x = _points(256, seed=2)
    keep = _away_from_faces(x, field.grid.resolutions, 2e-4)
    assert keep.sum() > 150
    sdf_f, _, grad_f = field.sdf_and_gradient(x, create_graph=False)
    _, _, grad_r = twin.sdf_and_gradient(x, create_graph=False)
    assert torch.allclose(grad_f[keep], grad_r[keep], atol=5e-3)
    assert field.last_laplacian is not None and field.last_laplacian.shape == (256,)
    assert torch.allclose(sdf_f, twin.sdf(x), atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_eikonal_parameter_gradients_match_double_backward(backend, impl):
    """Eikonal loss from the analytic gradient trains table and decoder like torch double backward."""
    field = _field(backend, impl, "analytic")
    twin = _torch_twin(field, backend)
    x = _points(128, seed=3)
    grads = []
    for f in (field, twin):
        _, _, g = f.sdf_and_gradient(x, create_graph=True)
        assert g.requires_grad
        ((g.norm(dim=-1) - 1.0) ** 2).mean().backward()
        grads.append({n: p.grad for n, p in f.named_parameters()})
    analytic, reference = grads
    assert analytic.keys() == reference.keys() and "grid.params" in analytic
    for name, g_ref in reference.items():
        g_ana = analytic[name]
        if g_ref is None:  # e.g. the output bias: no influence on d sdf / d x
            assert g_ana is None or g_ana.abs().max() == 0, name
            continue
        assert g_ana is not None, name
        scale = g_ref.abs().max().item()
        assert torch.allclose(g_ana, g_ref, rtol=1e-3, atol=1e-4 * max(scale, 1e-6)), name
    assert reference["grid.params"].abs().max() > 1e-4  # the table is trained by the eikonal term
    assert sum(g is not None for g in reference.values()) >= len(reference) - 1


# ---------------------------------------------------------------- finite-difference Laplacian
class _Sphere(SDFField):
    """|x| - r: gradient x/|x|, Laplacian 2/|x|."""

    feature_dim = 0

    def __init__(self, radius: float = 0.5):
        super().__init__()
        self.radius = radius

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        return points.norm(dim=-1) - self.radius, points.new_zeros(points.shape[0], 0)


class _Quadratic(_Sphere):
    """|x|^2: central differences are exact, Laplacian 6 for every step."""

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        return (points**2).sum(-1), points.new_zeros(points.shape[0], 0)


def test_fd_laplacian_of_analytic_sphere():
    field = _Sphere()
    field.normals_mode = "finite_difference"
    field.set_progress(0, fd_eps=1e-3)
    dirs = F.normalize(torch.randn(100, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), dim=-1)
    r = torch.linspace(0.3, 1.0, 100, dtype=torch.float64)
    x = dirs * r[:, None]
    sdf, feat, grad = field.sdf_and_gradient(x, create_graph=False)
    assert feat.shape == (100, 0)
    assert torch.allclose(sdf, r - 0.5, atol=1e-12)
    assert torch.allclose(grad, dirs, atol=1e-5)  # O(eps^2 / r^2)
    assert torch.allclose(field.last_laplacian, 2.0 / r, rtol=1e-4)


def test_fd_laplacian_exact_for_quadratic():
    field = _Quadratic()
    field.fd_eps = 0.25  # central differences of a quadratic are exact at any step
    x = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]], dtype=torch.float64)
    _, _, grad = field._fd_gradient(x)
    assert torch.allclose(grad, 2 * x, atol=1e-12)
    assert torch.allclose(field.last_laplacian, torch.full((2,), 6.0, dtype=torch.float64), atol=1e-12)


def test_fd_gradient_keeps_graph_only_when_asked():
    field = _field("hash", "torch", "finite_difference")
    x = _points(8)
    assert not field.sdf_and_gradient(x, create_graph=False)[2].requires_grad
    _, _, g = field.sdf_and_gradient(x, create_graph=True)
    g.sum().backward()
    assert field.grid.params.grad.abs().max() > 0


# ---------------------------------------------------------------- config, init, progress
@pytest.mark.parametrize("backend", BACKENDS)
def test_autograd_normals_need_torch_grid(backend):
    with pytest.raises(ConfigError, match="implementation=torch"):
        build_sdf(_cfg(backend, "warp", "autograd"))
    for normals in ("analytic", "finite_difference"):  # these work with the (first-order) warp kernels
        assert build_sdf(_cfg(backend, "warp", normals)).normals_mode == normals


@pytest.mark.parametrize("backend", BACKENDS)
def test_geometric_init_is_a_sphere(backend):
    """Mean SDF over directions ~ |x| - init_radius (IDR init, width 256), increasing outwards."""
    torch.manual_seed(0)
    field = build_sdf(_cfg(backend, hidden=256, layers=3, multires=0, init_radius=0.5))
    dirs = F.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    means = []
    with torch.no_grad():
        for r in (0.3, 0.5, 0.8):
            means.append(field.sdf(dirs * r).mean().item())
            assert abs(means[-1] - (r - 0.5)) < 0.1, (r, means[-1])
    assert means[0] < means[1] < means[2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_progress_masks_levels(backend):
    field = _field(backend, "torch", "analytic")
    x = _points(64)
    full = field.sdf(x).detach()
    field.set_progress(10, active_levels=2, fd_eps=2e-3)
    assert field.grid.active_levels == 2 and field.fd_eps == 2e-3
    enc = field.grid(x)
    assert enc[:, 4:].abs().max() == 0 and enc[:, :4].abs().max() > 0
    partial = field.sdf(x).detach()
    # same as the full field with the tables of levels 2, 3 zeroed
    twin = _torch_twin(field, backend)
    with torch.no_grad():
        twin.grid.params[field.grid.layout.offsets[2] :] = 0.0
    assert torch.allclose(partial, twin.sdf(x), atol=1e-6) and (partial - full).abs().max() > 1e-4
    _, _, g = field.sdf_and_gradient(x, create_graph=True)
    g.norm(dim=-1).sum().backward()
    assert field.grid.params.grad[field.grid.layout.offsets[2] :].abs().max() == 0
    field.set_progress(11)  # no active_levels: unchanged
    assert field.grid.active_levels == 2
    field.set_progress(12, active_levels=99)
    assert field.grid.active_levels == 4 and torch.allclose(field.sdf(x), full)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_analytic_gradient_without_grid_graph(backend, impl):
    """Zero active levels (coarse-to-fine start) or a frozen field: grid features carry no graph."""
    field = _field(backend, impl, "analytic")
    twin = _torch_twin(field, backend)
    x = _points(32)
    field.set_progress(0, active_levels=0)
    twin.set_progress(0, active_levels=0)
    _, _, g = field.sdf_and_gradient(x, create_graph=True)
    assert torch.allclose(g, twin.sdf_and_gradient(x, create_graph=False)[2], atol=1e-5)
    field.set_progress(1, active_levels=4)
    twin.set_progress(1, active_levels=4)
    field.requires_grad_(False)
    _, _, g = field.sdf_and_gradient(x, create_graph=False)
    assert torch.allclose(g, twin.sdf_and_gradient(x, create_graph=False)[2], atol=1e-4)


def test_mlp_backend_ignores_levels_and_analytic_falls_back_to_autograd():
    torch.manual_seed(0)
    field = build_sdf(SDFConfig(hidden=32, layers=3, skip_in=(), multires=2, feature_dim=4, normals="analytic"))
    x = _points(16).double()
    field = field.double()
    field.set_progress(0, active_levels=1)
    _, _, g = field.sdf_and_gradient(x, create_graph=False)
    eps = 1e-6
    fd = torch.stack(
        [(field.sdf(x + eps * e) - field.sdf(x - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=x.dtype)], -1
    )
    assert torch.allclose(g, fd, atol=1e-6) and not math.isnan(g.sum().item())
