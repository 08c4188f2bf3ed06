"""Zero-size safety: 0 points, 0 rays, rays that hit nothing, an all-empty occupancy grid, all-background masks.

Every kernel, sampler, renderer, loss and shading module must return well-formed (0-row) outputs, losses
over an empty selection a finite 0 that keeps the graph, and backward must run (zero grads, no crash).
The Warp hash-grid backward on 0 points used to raise ``cannot reshape tensor of 0 elements``.
"""

from __future__ import annotations

import math

import pytest
import torch

from lumisurf.config import apply_overrides
from lumisurf.encodings import hash_grid_torch as ref
from lumisurf.encodings.hash_grid import GRID_KERNELS, HashGrid, HashGridConfig, kernel_status
from lumisurf.fields.assignment import AssignmentField
from lumisurf.fields.background import BackgroundNeRF
from lumisurf.fields.base import build_sdf
from lumisurf.losses import geometry, photometric, s3im, segmentation
from lumisurf.losses.occlusion import occlusion_loss
from lumisurf.models.surface import RenderState, SurfaceModel
from lumisurf.presets import preset_config
from lumisurf.renderers import volume
from lumisurf.renderers.occlusion import entering_alpha, march_occlusion
from lumisurf.samplers import ray_samplers as rs
from lumisurf.samplers.occupancy import OccupancyGrid
from lumisurf.shading.heads import ShadingContext, build_heads
from lumisurf.shading.nero import NeroShading
from lumisurf.shading.segmented import SegmentedShading
from lumisurf.shading.split_sum import load_lut
from lumisurf.train.segmentation_step import metal_prior_loss

SMALL_GRID = HashGridConfig(n_levels=4, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=32)
TINY = [
    "sampler.n_samples=8",
    "sampler.n_importance=8",
    "sampler.up_sample_steps=2",
    "model.background.n_samples=4",
    "model.sdf.grid.log2_table_size=12",
    "model.sdf.grid.max_resolution=64",
]


def leaf(*shape) -> torch.Tensor:
    return torch.rand(*shape, requires_grad=True)


def _backward_ok(out: torch.Tensor, *leaves: torch.Tensor) -> None:
    """Sum-backward runs and every leaf gets a finite gradient (or none)."""
    out.sum().backward()
    for x in leaves:
        assert x.grad is None or torch.isfinite(x.grad).all()


def _grads_zero(module: torch.nn.Module) -> bool:
    return all(p.grad is None or not p.grad.any() for p in module.parameters())


# ----------------------------------------------------------------------------- hash grid (Warp + torch twin)
def _uses_kernel(impl: str) -> bool:
    return kernel_status(impl, "cpu") is None


def test_to_level_major_hand_values():
    g = torch.arange(12.0).reshape(2, 6)  # N = 2 points, L = 3 levels, F = 2: column l * F + f
    out = ref.to_level_major(g, 2, 2)  # first k = 2 levels -> [k, N, F]
    assert torch.equal(out, torch.tensor([[[0.0, 1], [6, 7]], [[2, 3], [8, 9]]]))
    assert ref.to_level_major(torch.zeros(0, 6), 2, 2).shape == (2, 0, 2)  # used to raise
    assert ref.to_level_major(torch.zeros(0, 6, 3), 3, 2).shape == (3, 0, 2, 3)


@pytest.mark.parametrize("impl", ["warp", "numba", "torch"])
@pytest.mark.parametrize("levels", [None, 0])
@pytest.mark.parametrize("with_jac", [False, True])
def test_hash_grid_zero_points(impl, levels, with_jac):
    grid = HashGrid(HashGridConfig(**{**SMALL_GRID.__dict__, "implementation": impl}))
    if levels is not None:
        grid.set_active_levels(levels)
    x = torch.zeros(0, 3, requires_grad=True)
    if with_jac:
        feat, jac = grid.forward_with_grad(x)
        assert jac.shape == (0, 8, 3)
        (feat.sum() + jac.sum()).backward()
    else:
        feat = grid(x)
        feat.sum().backward()
    assert feat.shape == (0, 8)
    assert grid.params.grad.shape == grid.params.shape and not grid.params.grad.any()
    assert x.grad is None or x.grad.shape == (0, 3)
    if impl != "torch" and GRID_KERNELS.get(impl).missing() is None:
        assert _uses_kernel(impl)  # the kernels ran (a failure would have switched to the torch twin)


@pytest.mark.parametrize("impl", ["warp", "numba", "torch"])
def test_hash_grid_no_active_level_keeps_graph(impl):
    """0 active levels: zero features that still hang on the table, so backward gives zero grads (both twins)."""
    grid = HashGrid(HashGridConfig(**{**SMALL_GRID.__dict__, "implementation": impl}))
    grid.set_active_levels(0)
    x = leaf(5, 3)
    feat, jac = grid.forward_with_grad(x)
    assert not feat.any() and not jac.any() and feat.requires_grad and jac.requires_grad
    (feat.sum() + jac.sum()).backward()
    assert not grid.params.grad.any() and not x.grad.any()


def test_hash_grid_torch_twin_double_backward_zero_points():
    table = torch.rand(SMALL_GRID.n_levels * 2**10, 2, requires_grad=True)
    layout = ref.make_layout(ref.level_resolutions(4, 4, 2.0), 10)
    x = torch.zeros(0, 3, requires_grad=True)
    feat, jac = ref.hash_encode_with_grad_torch(x, table, layout)
    (g,) = torch.autograd.grad(feat.sum(), x, create_graph=True)  # [0, 3]
    (g.sum() + jac.pow(2).sum()).backward()
    assert g.shape == (0, 3) and (table.grad is None or not table.grad.any())


# ----------------------------------------------------------------------------- SDF fields
@pytest.mark.parametrize(
    "backend,normals,impl",
    [
        ("hash", "analytic", "warp"),
        ("hash", "analytic", "torch"),
        ("hash", "finite_difference", "warp"),
        ("hash", "autograd", "torch"),
        ("hybrid", "analytic", "warp"),
        ("mlp", "autograd", "torch"),
    ],
)
def test_sdf_zero_points(backend, normals, impl):
    cfg = apply_overrides(
        preset_config("lumisurf"),
        TINY
        + [
            f"model.sdf.backend={backend}",
            f"model.sdf.normals={normals}",
            f"model.sdf.grid.implementation={impl}",
            "model.sdf.hidden=64",
        ],
    )
    field = build_sdf(cfg.model.sdf)
    sdf, feat, grad = field.sdf_and_gradient(torch.zeros(0, 3), create_graph=True)
    assert sdf.shape == (0,) and feat.shape == (0, field.feature_dim) and grad.shape == (0, 3)
    loss = geometry.eikonal_loss(grad) + geometry.curvature_loss(
        field.last_laplacian if field.last_laplacian is not None else sdf
    )
    assert loss.item() == 0.0
    if loss.requires_grad:  # eikonal through the analytic / double-backward path
        loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in field.parameters())


# ----------------------------------------------------------------------------- samplers
def test_ray_samplers_zero_rays():
    o, d, near, far = torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 1), torch.zeros(0, 1)
    n, f, hit = rs.near_far_sphere(o, d)
    assert n.shape == f.shape == (0, 1) and hit.shape == (0,)
    t = rs.stratified_samples(near, far, 8, perturb=True)
    assert t.shape == (0, 8)
    for det in (True, False):
        assert rs.sample_pdf(torch.zeros(0, 9), torch.zeros(0, 8), 4, det).shape == (0, 4)
    assert rs.neus_upsample(o, d, t, torch.zeros(0, 8), 4, 64.0).shape == (0, 4)
    merged, idx = rs.merge_samples(t, torch.zeros(0, 4))
    assert merged.shape == idx.shape == (0, 12)
    dists, mid = rs.interval_dists(t, far)
    assert dists.shape == mid.shape == (0, 8)
    assert rs.background_samples(far, 4, perturb=True).shape == (0, 4)
    assert rs.contract_inverted_sphere(torch.zeros(0, 3)).shape == (0, 4)


def test_occupancy_all_empty():
    grid = OccupancyGrid(resolution=8)
    frac = grid.update(lambda x: x.norm(dim=-1) + 5.0, inv_s=20.0)  # no surface anywhere
    assert frac == 0.0 and not grid.occupied.any()
    o = torch.tensor([[0.0, 0.0, -3.0]]).repeat(3, 1)
    d = torch.tensor([[0.0, 0.0, 1.0]]).repeat(3, 1)
    near, far, hit = rs.near_far_sphere(o, d)  # enters the unit sphere at t = 2, leaves at t = 4
    new_near, new_far, new_hit = grid.ray_bounds(o, d, near, far, 16)
    assert torch.equal(new_near, torch.full((3, 1), 2.0)) and torch.equal(new_far, new_near)  # empty interval
    assert not new_hit.any()
    assert grid.lookup(torch.zeros(0, 3)).shape == (0,)
    shapes = [
        t.shape for t in grid.ray_bounds(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 1), torch.zeros(0, 1), 16)
    ]
    assert shapes == [(0, 1), (0, 1), (0,)]


# ----------------------------------------------------------------------------- renderers
def test_volume_rendering_zero_rays_and_zero_samples():
    for n_rays, n_s in ((0, 8), (3, 0)):
        sdf, w_in, t = leaf(n_rays, n_s), leaf(n_rays, n_s), leaf(n_rays, n_s)
        alpha = volume.neus_alpha(sdf, -torch.ones(n_rays, n_s), t, torch.tensor(20.0))
        w = volume.render_weights(alpha)
        rgb = volume.accumulate(w, torch.rand(n_rays, n_s, 3))
        opacity = volume.accumulate(w)
        assert w.shape == (n_rays, n_s) and rgb.shape == (n_rays, 3) and opacity.shape == (n_rays, 1)
        assert volume.render_depth(w_in, t).shape == (n_rays, 1)
        bg = torch.tensor([0.2, 0.4, 0.6])
        out = volume.composite_background(rgb, opacity, bg)  # no samples: exactly the background
        assert torch.equal(out, bg.expand(n_rays, 3))
        _backward_ok(out + volume.render_depth(w_in, t).sum(), sdf, w_in, t)


def test_occlusion_march_zero_points():
    occ = march_occlusion(lambda x: x.norm(dim=-1) - 0.5, torch.zeros(0, 3), torch.zeros(0, 3), 20.0, 8)
    assert occ.shape == (0, 1)
    assert entering_alpha(torch.zeros(0, 8), torch.zeros(0, 8), 20.0).shape == (0, 7)


# ----------------------------------------------------------------------------- losses
def _e(*shape) -> torch.Tensor:
    return torch.zeros(*shape, requires_grad=True)


EMPTY_LOSSES = {
    "eikonal": lambda: geometry.eikonal_loss(_e(0, 3)),
    "eikonal_weighted": lambda: geometry.eikonal_loss(_e(0, 8, 3), _e(0, 8)),
    "mask": lambda: geometry.mask_loss(_e(0, 1), torch.zeros(0)),
    "curvature": lambda: geometry.curvature_loss(_e(0)),
    "normal_smooth": lambda: geometry.normal_smoothness_loss(_e(0, 3), _e(0, 3)),
    "rgb": lambda: photometric.rgb_loss(_e(0, 3), torch.zeros(0, 3), "l1"),
    "rgb_weighted": lambda: photometric.rgb_loss(_e(0, 3), torch.zeros(0, 3), "huber", weight=torch.zeros(0, 1)),
    "s3im": lambda: s3im.s3im_loss(_e(0, 3), torch.zeros(0, 3)),
    "occlusion": lambda: occlusion_loss(_e(0, 1), torch.zeros(0, 1)),
    "occlusion_smooth": lambda: occlusion_loss(_e(0, 1), torch.zeros(0, 1), beta=0.1),
    "consistency": lambda: segmentation.consistency_loss(_e(0, 2, 2), torch.zeros(0, 2, dtype=torch.bool)),
    "entropy": lambda: segmentation.entropy_loss(_e(0, 2)),
    "sparsity_max": lambda: segmentation.sparsity_loss(_e(0, 2), "max"),
    "sparsity_ratio": lambda: segmentation.sparsity_loss(_e(0, 2), "ratio"),
    "boundary": lambda: segmentation.boundary_smoothness_loss(_e(0, 2), _e(0, 2), torch.zeros(0)),
    "energy": lambda: segmentation.energy_conservation_loss(_e(0)),
    "range": lambda: segmentation.range_loss(_e(0, 3), 0.02, 0.95),
    "smoothness": lambda: segmentation.smoothness_loss(_e(0, 5), _e(0, 5)),
    "em": lambda: segmentation.em_assignment_loss(_e(0, 2), segmentation.em_posterior(torch.zeros(0, 2), 0.1)),
    "head_fit": lambda: segmentation.head_fit_loss(_e(0, 2, 3), torch.zeros(0, 1), torch.zeros(0, 3), 0),
    "metal_prior": lambda: metal_prior_loss(_e(0, 2), ("specular", "lambert"), torch.zeros(0)),
}


@pytest.mark.parametrize("name", sorted(EMPTY_LOSSES))
def test_loss_over_empty_selection_is_zero_with_graph(name):
    loss = EMPTY_LOSSES[name]()
    assert loss.shape == () and loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_losses_all_background_mask():
    opacity = torch.zeros(4, 1, requires_grad=True)  # nothing rendered, nothing to render
    m = geometry.mask_loss(opacity, torch.zeros(4))
    assert m.item() == pytest.approx(-math.log(1.0 - 1e-3))  # opacity clamped to 1e-3
    w = photometric.rgb_loss(opacity.expand(4, 3), torch.ones(4, 3), "l1", weight=torch.zeros(4))
    assert w.item() == 0.0  # every ray weighted 0: sum(w l) / max(sum w, 1e-8)
    (m + w).backward()
    assert torch.isfinite(opacity.grad).all()


# ----------------------------------------------------------------------------- shading and small fields
def _shading_inputs(feature_dim: int = 15):
    return [leaf(0, 3), leaf(0, 3), leaf(0, 3), leaf(0, feature_dim), leaf(0, 3)]


@pytest.mark.parametrize("human", [False, True])
def test_nero_shading_zero_points(human):
    cfg = apply_overrides(preset_config("nero"), [f"model.nero.human_light={str(human).lower()}"])
    ins = _shading_inputs()
    out = NeroShading(cfg.model.nero, 15)(*ins)
    assert out["rgb"].shape == (0, 3) and out["occ_raw"].shape == (0, 1) and out["roughness"].shape == (0, 1)
    _backward_ok(out["rgb"].sum() + out["occ_raw"].sum(), *ins)


@pytest.mark.parametrize("solo", [None, 0])
def test_segmented_shading_zero_points(solo):
    shading = SegmentedShading(preset_config("lumisurf-seg").model, 15)
    shading.solo = solo
    ins = _shading_inputs()
    out = shading(*ins)
    assert out["rgb"].shape == (0, 3) and out["probs"].shape == (0, 2) and out["head_rgb"].shape == (0, 2, 3)
    _backward_ok(out["rgb"].sum() + out["reflectance"].sum(), *ins)


def test_heads_assignment_background_zero_points():
    ctx = ShadingContext(leaf(0, 3), leaf(0, 3), leaf(0, 3), leaf(0, 15), leaf(0, 3), lambda r: r.expand(-1, 3))
    heads = build_heads(
        ["lambert", "specular", "transmission", "subsurface"], 15, lut_table=torch.from_numpy(load_lut())
    )
    for head in heads:
        out = head(ctx)
        assert out["rgb"].shape == (0, 3) and out["reflectance"].shape == (0,)
        _backward_ok(out["rgb"])
    probs = AssignmentField(preset_config("lumisurf-seg").model.assignment).probs(leaf(0, 3))
    assert probs.shape == (0, 2)
    sigma, rgb = BackgroundNeRF(preset_config("neus").model.background)(leaf(0, 4), leaf(0, 3))
    assert sigma.shape == (0,) and rgb.shape == (0, 3)
    _backward_ok(probs.sum() + sigma.sum() + rgb.sum())


# ----------------------------------------------------------------------------- the model and a trainer step
MODEL_PRESETS = ["lumisurf", "nero", "lumisurf-seg"]


def _empty_model(preset: str, background: str = "constant") -> SurfaceModel:
    cfg = apply_overrides(preset_config(preset), TINY)
    model = SurfaceModel(cfg.model, cfg.sampler, background)
    model.occupancy.occupied.fill_(False)  # the grid emptied: no sample may reach the field
    model.occupancy.initialized.fill_(True)
    return model


@pytest.mark.parametrize("preset", MODEL_PRESETS)
@pytest.mark.parametrize("n_rays", [5, 0])
def test_model_all_empty_occupancy(preset, n_rays):
    torch.manual_seed(0)
    model = _empty_model(preset)
    o = torch.tensor([[0.0, 0.0, -3.0]]).repeat(n_rays, 1)
    d = torch.nn.functional.normalize(torch.tensor([[0.05, 0.02, 1.0]]), dim=-1).repeat(n_rays, 1)
    bg = torch.tensor([0.25, 0.5, 0.75]).expand(n_rays, 3)
    with torch.no_grad():  # the render / validation path (no graph for the eikonal term)
        shown = model(o, d, bg, RenderState(), need_grad_graph=False)
    assert torch.equal(shown["rgb"], bg) and shown["normal"].shape == (n_rays, 3)
    out = model(o, d, bg, RenderState(perturb=True))
    assert torch.equal(out["rgb"], bg) and not out["opacity"].any()
    for key, width in (("opacity", 1), ("depth", 1), ("normal", 3), ("albedo", 3), ("material_probs", 2)):
        if key in out or key in ("opacity", "depth", "normal"):
            assert out[key].shape == (n_rays, width) and not out[key].any()
    assert out["gradients"].shape[0] == 0 and out["inside"].shape[0] == 0 and float(out["samples_per_ray"]) == 0
    loss = (
        photometric.rgb_loss(out["rgb"], torch.ones(n_rays, 3), "charbonnier")
        + 0.1 * geometry.eikonal_loss(out["gradients"], out["inside"])
        + 0.1 * geometry.eikonal_loss(out["gradients"])
        + 0.1 * geometry.mask_loss(out["opacity"], torch.zeros(n_rays))
    )
    if "occ_pred" in out:
        loss = loss + occlusion_loss(out["occ_pred"], out["occ_target"])
    assert torch.isfinite(loss)
    loss.backward()
    assert _grads_zero(model.sdf) and _grads_zero(model.color)


def test_model_rays_missing_the_sphere_nerfpp_background():
    torch.manual_seed(0)
    cfg = apply_overrides(preset_config("lumisurf"), TINY + ["sampler.occupancy=false"])
    model = SurfaceModel(cfg.model, cfg.sampler, "nerf++")
    o = torch.tensor([[0.0, 0.0, -3.0]]).repeat(4, 1)
    d = torch.tensor([[0.0, 1.0, 0.0]]).repeat(4, 1)  # passes 3 units from the centre
    out = model(o, d, torch.zeros(4, 3), RenderState())
    assert not out["opacity"].any() and out["gradients"].shape[0] == 0
    loss = photometric.rgb_loss(out["rgb"], torch.ones(4, 3), "l1") + geometry.eikonal_loss(out["gradients"])
    loss.backward()
    assert _grads_zero(model.sdf) and out["rgb"].requires_grad  # the color comes from the background alone
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.background.parameters())


@pytest.mark.parametrize("preset", MODEL_PRESETS)
def test_trainer_step_with_empty_occupancy(preset, tiny_scene, tmp_path):
    """The user's crash: a trainer step (every loss of the preset, segmentation terms on) once the grid emptied."""
    from lumisurf.train.run_dir import RunDir
    from lumisurf.train.trainer import Trainer

    cfg = apply_overrides(
        preset_config(preset),
        TINY
        + [
            "train.batch_rays=32",
            "train.val_every=0",
            "train.ckpt_every=0",
            "train.max_steps=10",
            "train.device=cpu",
            "loss.s3im_weight=0.1",
            "loss.s3im_patch_height=8",
            "loss.grid_tv_weight=0.0001",
        ],
    )
    run = RunDir(tmp_path / preset)
    run.prepare_new(cfg, force=False, resume=False)
    trainer = Trainer(cfg, run, scene=tiny_scene, progress=False)
    occ = trainer.model.occupancy
    occ.occupied.fill_(False)
    occ.initialized.fill_(True)
    for all_terms in (False, True):  # phase A, then no phase schedule: every loss term on (segmentation too)
        if all_terms:
            trainer.phases = None
        scalars = trainer.train_step()
        assert all(math.isfinite(v) for v in scalars.values()), scalars
        assert scalars["samples_per_ray"] == 0 and scalars["loss_eikonal"] == 0.0
        grid_grad = trainer.model.sdf.grid.params.grad
        assert grid_grad is None or not grid_grad.any()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
