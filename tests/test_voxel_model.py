"""SparseVoxelModel: rendering a camera, structure changes that keep the image, optimizer state carried."""

from __future__ import annotations

import copy

import numpy as np
import torch

from lumisurf.config import Config
from lumisurf.data.synthetic import look_at_cameras
from lumisurf.voxels.model import SparseVoxelModel
from lumisurf.voxels.structure import VoxelOctree


def _sphere_model(mode: str) -> SparseVoxelModel:
    tree = VoxelOctree.dense(3, torch.full((3,), -1.0), 2.0)
    pos = tree.corner_positions()
    sdf = pos.norm(dim=-1) - 0.55
    model = SparseVoxelModel(tree, mode=mode, sh_bands=2, geo_init=sdf if mode == "sdf" else -sdf * 40.0, inv_s=30.0)
    with torch.no_grad():
        model.sh0[:, 0] = torch.rand(len(tree), 3, generator=torch.Generator().manual_seed(0))
    return model


CAMS = look_at_cameras(np.array([[2.0, 1.4, 1.0], [-1.5, 2.2, -0.7]]), 24, 20, fov_deg=55.0)


def test_render_view_shapes_and_ranges():
    for mode in ("density", "sdf"):
        out = _sphere_model(mode).rasterize_view(CAMS, 0, torch.ones(3))
        assert out["rgb"].shape == (480, 3) and out["opacity"].shape == (480, 1)
        assert out["opacity"].min() >= 0 and out["opacity"].max() <= 1
        assert out["opacity"].max() > 0.9 and out["opacity"].min() < 0.1  # the sphere and the background


def test_subdividing_keeps_the_sdf_image():
    """NeuS' interval opacity composes exactly over a split segment and the trilinear field is kept, so the
    image is unchanged except where a ray grazes the surface inside one voxel: the split adds an SDF sample
    in the segment's middle that can see the dip below zero its end points missed (a few silhouette pixels)."""
    model = _sphere_model("sdf")
    model.active_bands = 1  # view-independent color: children see their parent's color
    before = model.rasterize_view(CAMS, 1, torch.ones(3))
    mask = torch.rand(len(model.tree), generator=torch.Generator().manual_seed(1)) < 0.5
    model.restructure(*model.tree.subdivide(mask))
    after = model.rasterize_view(CAMS, 1, torch.ones(3))
    assert len(model.tree) == 512 + 7 * int(mask.sum())
    for k in ("rgb", "opacity"):
        diff = (after[k] - before[k]).abs().amax(-1)
        assert (diff < 2e-4).float().mean() > 0.95 and diff.mean() < 5e-4, k


def test_optimizer_state_follows_a_subdivision_and_pruning():
    model = _sphere_model("density")
    opt = torch.optim.Adam([model.geo, model.sh0, model.shs], lr=1e-2)
    model.rasterize_view(CAMS, 0, torch.ones(3))["rgb"].sum().backward()
    opt.step()
    old_geo_avg = opt.state[model.geo]["exp_avg"].clone()
    tree, remap = model.tree.subdivide(torch.arange(len(model.tree)) % 5 == 0)
    model.restructure(tree, remap, opt)
    st = opt.state[model.geo]
    assert st["exp_avg"].shape == model.geo.shape and torch.allclose(st["exp_avg"], remap.corners(old_geo_avg))
    assert opt.state[model.shs]["exp_avg"].shape == model.shs.shape
    tree, remap = model.tree.select(model.tree.centres().norm(dim=-1) < 0.9)
    model.restructure(tree, remap, opt)
    opt.zero_grad()
    model.rasterize_view(CAMS, 1, torch.ones(3))["rgb"].sum().backward()
    opt.step()  # the optimizer still works on the new parameters
    assert all(p.grad is not None for p in (model.geo, model.sh0))


def test_fitting_one_view_lowers_the_loss():
    model = _sphere_model("density")
    reference = _sphere_model("density")
    with torch.no_grad():  # the same sphere, uniformly dark red, and a bit larger
        reference.sh0.zero_()
        reference.sh0[:, 0] = torch.tensor([0.3, -1.2, -1.2])
        reference.geo += 8.0
        target = reference.rasterize_view(CAMS, 0, torch.ones(3))["rgb"]
    opt = torch.optim.Adam([model.geo, model.sh0, model.shs], lr=5e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = ((model.rasterize_view(CAMS, 0, torch.ones(3))["rgb"] - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]  # 0.113 -> 0.065 when written


def test_field_is_the_trilinear_sdf_and_positive_in_pruned_space():
    model = _sphere_model("sdf")
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.1, -0.2], [0.9, 0.9, 0.9]])
    f = model.field(pts)
    assert torch.allclose(f[:2], pts[:2].norm(dim=-1) - 0.55, atol=0.06)  # level-3 cells: trilinear error
    tree, remap = model.tree.select(model.tree.centres().norm(dim=-1) < 1.0)
    model.restructure(tree, remap)
    assert model.field(pts)[2].item() == 1.0


def test_sdf_voxels_give_back_the_sphere_through_marching_cubes():
    from lumisurf.mesh.marching_cubes import extract_mesh

    tree = VoxelOctree.dense(5, torch.full((3,), -1.0), 2.0)
    model = SparseVoxelModel(tree, mode="sdf", geo_init=tree.corner_positions().norm(dim=-1) - 0.55)
    with torch.no_grad():
        mesh = extract_mesh(lambda x: model.field(x), resolution=64)
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(r.mean() - 0.55) < 0.005 and r.std() < 0.01


def test_load_state_dict_adopts_a_saved_layout_in_place():
    """The guard's rollback: a state saved before a subdivision loads into the same parameter objects, so the
    optimizer that holds them loads its saved state too and keeps stepping."""
    model = _sphere_model("density")
    opt = torch.optim.Adam([model.geo, model.sh0, model.shs], lr=1e-2)
    model.rasterize_view(CAMS, 0, torch.ones(3))["rgb"].sum().backward()
    opt.step()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(opt.state_dict())
    model.restructure(*model.tree.subdivide(torch.arange(len(model.tree)) % 3 == 0), opt)
    geo_param = model.geo
    model.load_state_dict(saved)
    opt.load_state_dict(saved_opt)
    assert model.geo is geo_param and len(model.tree) == 512 and torch.equal(model.geo, saved["geo"])
    assert torch.equal(model.tree.path, saved["tree_path"]) and model.priority.shape == (512,)
    opt.zero_grad()
    model.rasterize_view(CAMS, 1, torch.ones(3))["rgb"].sum().backward()
    opt.step()
    assert opt.state[model.geo]["exp_avg"].shape == model.geo.shape


def _small_model_cfg():
    from lumisurf.config import ModelConfig, NeroConfig

    cfg = ModelConfig()
    cfg.nero = NeroConfig(hidden=16, layers=2, weight_norm=False)
    cfg.assignment.head_hidden = 16
    return cfg


def test_deferred_nero_shading_reaches_corners_and_networks():
    from lumisurf.voxels.deferred import DeferredShading

    model = _sphere_model("sdf")
    model.shading = DeferredShading("nero", _small_model_cfg())
    out = model.rasterize_view(CAMS, 0, torch.ones(3))
    assert out["rgb"].shape == (480, 3) and out["albedo"].shape == (480, 3) and out["metallic"].shape == (480, 1)
    background = out["opacity"][:, 0] < 1e-3
    assert background.any() and torch.allclose(out["rgb"][background], torch.ones(3))
    assert (out["albedo"][background] == 0).all() and (out["albedo"][~background] > 0).all()
    out["rgb"].sum().backward()
    assert model.geo.grad.abs().sum() > 0  # through the composited normal and depth
    assert all(p.grad is not None for p in model.shading.shader.materials.albedo.parameters())
    assert model.shading.grid.params.grad.abs().sum() > 0
    groups = {g["name"] for g in model.param_groups(Config())}
    assert groups == {"geo", "sh0", "shs", "inv_s", "shading"}


def test_deferred_segmented_shading_gives_material_probabilities():
    """The lumisurf-seg mixture (specular + Lambert heads, hash-grid assignment) shades each covered pixel;
    its probabilities are a distribution there, zero off the object, and train the assignment field."""
    from lumisurf.voxels.deferred import DeferredShading

    model = _sphere_model("sdf")
    model.shading = DeferredShading("segmented", _small_model_cfg())
    out = model.rasterize_view(CAMS, 0, torch.ones(3))
    probs, covered = out["material_probs"], out["opacity"][:, 0] > 1e-3
    assert probs.shape == (480, 2) and covered.any() and not covered.all()
    assert torch.allclose(probs[covered].sum(-1), torch.ones(int(covered.sum()))) and (probs[~covered] == 0).all()
    (out["rgb"].sum() + probs[:, 0].sum()).backward()
    assert model.geo.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shading.shader.assignment.parameters())


def test_point_colors_are_the_holding_voxels_sh_color():
    tree = VoxelOctree.dense(1, torch.full((3,), -1.0), 2.0)  # 8 voxels of edge 1
    model = SparseVoxelModel(tree, mode="sdf", sh_bands=1)
    with torch.no_grad():
        model.sh0[:, 0] = torch.arange(8.0)[:, None] * 0.1  # DC coefficient per voxel
    pts = tree.centres() * 0.9
    d = torch.tensor([[0.0, 0.0, 1.0]]).expand(8, 3)
    expected = (0.5 + 0.28209479 * torch.arange(8.0) * 0.1)[:, None].expand(8, 3).clamp(0, 1)
    assert torch.allclose(model.point_colors(pts, d), expected, atol=1e-5)
    # a point half a voxel outside the grid along the view falls back to the voxel behind it; none: grey
    edge = torch.tensor([[0.5, 0.5, -1.2], [5.0, 5.0, 5.0]])
    out = model.point_colors(edge, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    v = int(tree.locate(torch.tensor([[0.5, 0.5, -0.7]]))[0])
    assert torch.allclose(out[0], expected[v]) and torch.allclose(out[1], torch.full((3,), 0.5))
