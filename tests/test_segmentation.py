"""Soft material segmentation: assignment field, losses, cross-view tensor, phases, EM, metrics, warm start."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import shared_dataset
from PIL import Image

from lumisurf.config import AssignmentConfig, Config, apply_overrides, from_dict, to_dict
from lumisurf.data.cameras import Cameras
from lumisurf.encodings.hash_grid import HashGridConfig
from lumisurf.errors import DataError
from lumisurf.eval.material_metrics import cross_view_consistency, matid_iou, read_matid_maps
from lumisurf.fields.assignment import AssignmentField, kmeans_soft_maps, load_mask_folder
from lumisurf.losses.segmentation import (
    boundary_smoothness_loss,
    consistency_loss,
    crease_weight,
    em_assignment_loss,
    em_posterior,
    energy_conservation_loss,
    entropy_loss,
    gather_probs_per_view,
    project_to_views,
    range_loss,
    sample_view_maps,
    smoothness_loss,
    sparsity_loss,
)
from lumisurf.train.phases import PhaseConfig, PhaseSchedule, default_phases, phases_from_config

SMALL_GRID = HashGridConfig(
    n_levels=4, n_features=2, log2_table_size=12, base_resolution=4, max_resolution=32, implementation="torch"
)


# ----------------------------------------------------------------------------- assignment field


@pytest.mark.parametrize("backend", ["hash", "mlp"])
def test_assignment_field(backend):
    torch.manual_seed(0)
    field = AssignmentField(AssignmentConfig(K=3, backend=backend, grid=SMALL_GRID, multires=2, hidden=16))
    x = torch.rand(50, 3) * 2 - 1
    logits, probs = field(x), field.probs(x)
    assert logits.shape == (50, 3) and probs.shape == (50, 3)
    assert torch.allclose(probs.sum(-1), torch.ones(50), atol=1e-6) and (probs >= 0).all()
    entropy_loss(probs).backward()
    assert field.log_temperature.grad is not None and field.mlp[0].weight.grad is not None
    with torch.no_grad():  # higher temperature -> flatter (higher-entropy) probabilities
        field.log_temperature.fill_(math.log(100.0))
        assert entropy_loss(field.probs(x)) > entropy_loss(probs.detach())


def test_config_round_trip_with_segmentation():
    cfg = apply_overrides(
        Config(),
        [
            "model.assignment.K=3",
            "model.assignment.heads=[lambert,specular,subsurface]",
            "schedule.phases=abcde",
            "loss.segmentation.entropy_weight=0.5",
        ],
    )
    assert cfg.model.assignment.heads == ("lambert", "specular", "subsurface") and cfg.model.assignment.K == 3
    assert from_dict(Config, to_dict(cfg)) == cfg
    assert cfg.model.assignment.grid.implementation == "auto"  # the fastest kernel that runs here
    assert [p.name for p in phases_from_config(cfg.schedule)] == list("ABCDE")
    assert phases_from_config(Config().schedule) is None


# ----------------------------------------------------------------------------- losses


def test_entropy_sparsity_hand_values():
    for K in (2, 3, 5):
        uniform = torch.full((4, K), 1.0 / K)
        assert math.isclose(float(entropy_loss(uniform)), math.log(K), rel_tol=1e-6)
        assert math.isclose(float(sparsity_loss(uniform)), 1 - 1 / K, rel_tol=1e-6)
        assert math.isclose(float(sparsity_loss(uniform, "ratio")), math.sqrt(K) - 1, rel_tol=1e-6)
    one_hot = torch.eye(3)
    assert float(entropy_loss(one_hot)) == pytest.approx(0.0, abs=1e-6)
    assert float(sparsity_loss(one_hot)) == 0.0


def test_consistency_hand_values():
    p = torch.softmax(torch.randn(5, 1, 3), -1).expand(5, 4, 3)
    assert float(consistency_loss(p, torch.ones(5, 4, dtype=torch.bool))) == pytest.approx(0.0, abs=1e-7)
    # 2 views disagreeing completely: mean (0.5, 0.5), variance 0.25 per class, summed over K -> 0.5
    two = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert float(consistency_loss(two, torch.ones(1, 2, dtype=torch.bool))) == pytest.approx(0.5)
    # a second point seen in one view only does not count; an invalid view is ignored
    three = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    assert float(consistency_loss(three, valid)) == pytest.approx(0.5)
    x = torch.softmax(torch.randn(3, 3, 2, dtype=torch.float64), -1).requires_grad_(True)
    all_valid = torch.ones(3, 3, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda t: consistency_loss(t, all_valid), (x,))


def test_other_losses_hand_values():
    a, b = torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    assert float(boundary_smoothness_loss(a, b)) == pytest.approx(1.0)  # (2 + 0) / 2
    n1 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    n2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    w = crease_weight(n1, n2, sharpness=2.0)
    assert torch.allclose(w, torch.tensor([0.25, 1.0]))
    assert float(boundary_smoothness_loss(a, b, w)) == pytest.approx(0.25)  # crease lowers it
    assert float(energy_conservation_loss(torch.tensor([0.5, 1.0, 1.5]))) == pytest.approx(0.25 / 3)
    assert float(range_loss(torch.tensor([-0.5, 0.5, 2.0]), 0.0, 1.0)) == pytest.approx((0.25 + 1.0) / 3)
    assert float(smoothness_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))) == pytest.approx(5.0)


def test_em_posterior_and_loss():
    res = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]])
    post = em_posterior(res, temperature=1.0)
    assert torch.allclose(post, torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    # colder temperature -> harder posterior
    assert em_posterior(res, 0.1)[0, 0] > 0.99
    probs = torch.tensor([[0.5, 0.5]], requires_grad=True)
    loss = em_assignment_loss(probs, torch.tensor([[0.75, 0.25]]))
    assert float(loss.detach()) == pytest.approx(math.log(2.0))
    loss.backward()
    assert torch.allclose(probs.grad, torch.tensor([[-1.5, -0.5]]))  # -q / p


# ----------------------------------------------------------------------------- projection and sampling


def _cameras() -> Cameras:
    """Two 8x6 OpenCV cameras at distance 3 looking at the origin along +z and along -x."""
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[0, :3, 3] = torch.tensor([0.0, 0.0, -3.0])
    c2w[1, :3, :3] = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # looks along -x
    c2w[1, :3, 3] = torch.tensor([3.0, 0.0, 0.0])
    f = torch.full((2,), 6.0)
    return Cameras(c2w, f, f, torch.full((2,), 4.0), torch.full((2,), 3.0), width=8, height=6)


def test_project_to_views_matches_cameras_project():
    cams = _cameras()
    pts = torch.rand(7, 3) - 0.5
    uv, z, inside = project_to_views(pts, cams, [0, 1])
    for v in range(2):
        uv_ref, z_ref = cams.project(pts, v)
        assert torch.allclose(uv[:, v], uv_ref, atol=1e-5) and torch.allclose(z[:, v], z_ref, atol=1e-6)
    assert inside.all()
    uv0, _, _ = project_to_views(torch.zeros(1, 3), cams, [0, 1])
    assert torch.allclose(uv0, torch.tensor([[[4.0, 3.0], [4.0, 3.0]]]))


def test_sample_view_maps_pixel_centres():
    maps = torch.arange(2 * 6 * 8 * 2, dtype=torch.float32).reshape(2, 6, 8, 2)
    uv = torch.tensor([[[2.5, 1.5], [7.5, 5.5]], [[3.0, 1.5], [0.5, 0.5]]])  # [M=2, V=2, 2]
    out = sample_view_maps(maps, uv)
    assert torch.allclose(out[0, 0], maps[0, 1, 2]) and torch.allclose(out[0, 1], maps[1, 5, 7])
    assert torch.allclose(out[1, 0], 0.5 * (maps[0, 1, 2] + maps[0, 1, 3]))  # half-way between columns
    assert torch.allclose(out[1, 1], maps[1, 0, 0])


def test_gather_probs_per_view_consistent_labels():
    """Maps rendered from a 3D labelling agree across views at the projections: loss 0; swapped: 0.5."""
    cams = _cameras()
    H, W = 6, 8
    maps = torch.zeros(2, H, W, 2)
    maps[:, :, :4, 0] = 1
    maps[:, :, 4:, 1] = 1  # both views: left half material 0, right half material 1
    pts = torch.tensor([[-0.3, 0.0, -0.3], [0.3, 0.0, 0.3]])  # u = 3.33 / 4.55 in view 0, 3.45 / 4.67 in 1
    probs, valid = gather_probs_per_view(maps, cams, [0, 1], pts)
    assert valid.all() and probs.shape == (2, 2, 2)
    assert torch.allclose(probs[0], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(probs[1], torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert float(consistency_loss(probs, valid)) == pytest.approx(0.0, abs=1e-7)
    swapped = torch.stack([maps[0], maps[1].flip(-1)])
    probs_s, _ = gather_probs_per_view(swapped, cams, [0, 1], pts)
    assert float(consistency_loss(probs_s, valid)) == pytest.approx(0.5)
    depth = torch.full((2, H, W), 100.0)  # something far in front of nothing: the points are not visible
    _, valid_occ = gather_probs_per_view(maps, cams, [0, 1], pts, depth_maps=depth)
    assert not valid_occ.any()


# ----------------------------------------------------------------------------- phases


def test_phase_schedule_switches_and_freezes():
    phases = default_phases((0.1, 0.3, 0.7, 1.0))
    sched = PhaseSchedule(phases)
    assert [sched.update(p).name for p in (0, 0.09, 0.1, 0.29, 0.3, 0.69, 0.7, 0.99, 1.0)] == list("AABBCCDDE")
    groups = [{"name": g, "lr": 1e-2, "params": []} for g in ("sdf", "assignment", "heads", "shading")]
    groups.append({"lr": 5.0, "params": []})  # unnamed: untouched
    sched.apply(groups, progress=0.05, step=5, lr_factor=0.5)
    # phase A: geometry and the shading model (heads, shared lights) train; the assignment waits for C
    assert [g["lr"] for g in groups] == [5e-3, 0.0, 5e-3, 5e-3, 5.0]
    sched.apply(groups, progress=0.5, step=50)  # phase C: assignment at 0.1x, heads on
    assert groups[0]["lr"] == pytest.approx(1e-2) and groups[1]["lr"] == pytest.approx(1e-3)
    assert groups[2]["lr"] == pytest.approx(1e-2)
    assert sched.current.is_active("consistency") and not phases[0].is_active("consistency")
    sched.apply(groups, progress=1.0, step=100)  # E: everything frozen
    assert all(g["lr"] == 0.0 for g in groups[:4])


def test_phase_schedule_em_alternation():
    sched = PhaseSchedule(default_phases((0.1, 0.3, 0.7, 1.0), em_every=5))
    sched.update(0.75, step=70)  # D entered at step 70: EM blocks count from there
    assert sched.trainable(70) == ("sdf", "variance", "color", "shading", "heads", "background")
    assert sched.trainable(75) == ("assignment",) and sched.lr_scale("sdf", 75) == 0.0
    assert sched.update(0.8, step=80).is_active("em") and sched.entered_step == 70
    with pytest.raises(ValueError):
        PhaseSchedule([PhaseConfig("X", 1.0, trainable=("nope",))])
    with pytest.raises(ValueError):
        default_phases((0.5, 0.3, 0.7, 1.0))


# ----------------------------------------------------------------------------- metrics


def test_matid_iou_permuted_labels():
    gt = np.array([[[0, 1, 1, 2], [2, 2, 1, 0]]])  # [1, 2, 4]
    pred = np.where(gt == 1, 1, np.where(gt == 2, 0, -1))  # cluster 1 = id 1, cluster 0 = id 2
    pred[0, 0, 0] = 0  # background pixels do not count
    res = matid_iou(pred, gt)
    assert res["mapping"] == {0: 2, 1: 1} and res["mean_iou"] == pytest.approx(1.0)
    wrong = pred.copy()
    wrong[0, 1, 0] = 1  # one id-2 pixel predicted as cluster 1: id1 IoU 3/4, id2 IoU 2/3
    res = matid_iou(wrong, gt)
    assert res["iou_per_class"] == {1: pytest.approx(0.75), 2: pytest.approx(2 / 3)}


def test_read_matid_maps(tmp_path):
    ids = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    Image.fromarray(ids).save(tmp_path / "r_0_matid.png")
    out = read_matid_maps([tmp_path / "r_0.png", tmp_path / "r_0"])
    assert out.shape == (2, 2, 2) and (out == ids).all()


def test_read_matid_maps_shared_data():
    root = shared_dataset("two_materials")
    maps = read_matid_maps([root / "train" / "r_0.png", root / "test" / "r_0"])
    assert maps.shape == (2, 200, 200) and set(np.unique(maps)) <= {0, 1, 2}
    assert (maps == 1).any() and (maps == 2).any()
    assert matid_iou(np.where(maps > 0, maps.astype(np.int64) - 1, -1), maps)["mean_iou"] == 1.0


def test_cross_view_consistency():
    p = torch.tensor([[[0.9, 0.1], [0.8, 0.2]], [[0.1, 0.9], [0.6, 0.4]]])
    res = cross_view_consistency(p, torch.ones(2, 2, dtype=torch.bool))
    # consensus (mean) labels (0, 1); per-view labels (0, 0 | 1, 0): class 0 IoU 2/3, class 1 IoU 1/2
    assert res["reprojection_iou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert res["variance"] == pytest.approx(float(consistency_loss(p, torch.ones(2, 2, dtype=torch.bool))))
    same = cross_view_consistency(p[:, :1].expand(2, 3, 2), torch.ones(2, 3, dtype=torch.bool))
    assert same["reprojection_iou"] == 1.0 and same["variance"] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- 2D warm starts


def test_kmeans_splits_two_color_image():
    img = torch.zeros(2, 6, 8, 3)
    img[:, :, :4] = torch.tensor([0.9, 0.2, 0.1])
    img[:, :, 4:] = torch.tensor([0.1, 0.3, 0.8])
    img += 0.01 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 6, 8)
    mask[:, 0, 0] = 0
    maps = kmeans_soft_maps(img, mask, K=2)
    assert maps.shape == (2, 6, 8, 2) and (maps[:, 0, 0] == 0).all()
    lab = maps.argmax(-1)
    assert (lab[:, 1:, :4] == lab[0, 1, 0]).all() and (lab[:, :, 4:] == lab[0, 0, 4]).all()
    assert lab[0, 1, 0] != lab[0, 0, 4]
    assert maps[:, 1:].amax(-1).min() > 0.99  # confident away from the background
    with_res = kmeans_soft_maps(img, None, K=2, residual=torch.zeros(2, 6, 8))
    assert torch.equal(with_res.argmax(-1)[:, 1:], lab[:, 1:])


def test_load_mask_folder(tmp_path):
    Image.fromarray(np.array([[0, 1], [2, 2]], dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.array([[1, 1], [0, 2]], dtype=np.uint8)).save(tmp_path / "b_matid.png")
    maps = load_mask_folder(tmp_path, files=["x/a.jpg", "y/b.png"])
    assert maps.shape == (2, 2, 2, 2)
    assert torch.equal(maps[0, 0, 0], torch.tensor([0.0, 0.0])) and torch.equal(maps[0, 1, 0], torch.tensor([0.0, 1.0]))
    assert torch.equal(maps[1, 0, 1], torch.tensor([1.0, 0.0]))
    assert load_mask_folder(tmp_path, K=3).shape == (2, 2, 2, 3)
    with pytest.raises(DataError):
        load_mask_folder(tmp_path, K=1)  # ids above K are an error, not silently merged


def test_gaussian_mixture_fits_a_broad_cluster_beside_a_tight_one():
    from lumisurf.fields.assignment import gaussian_mixture, kmeans

    g = torch.Generator().manual_seed(0)
    broad = torch.randn(900, 2, generator=g) * torch.tensor([0.25, 0.05])  # a long spread-out region
    tight = torch.randn(100, 2, generator=g) * 0.01 + torch.tensor([0.45, 0.15])
    x = torch.cat([broad, tight])
    truth = torch.cat([torch.zeros(900), torch.ones(100)]).bool()
    resp, means = gaussian_mixture(x, 2)
    assert resp.shape == (1000, 2) and torch.allclose(resp.sum(-1), torch.ones(1000), atol=1e-5)
    j = int(means[:, 0].argmax())  # the tight cluster's component
    assert float(((resp[:, j] > 0.5) == truth).float().mean()) > 0.995
    assert torch.allclose(means[j], torch.tensor([0.45, 0.15]), atol=0.01)
    km = kmeans(x, 2)  # k-means splits the broad region instead: the reason for the mixture
    lab = torch.cdist(x, km).argmin(-1) == int(km[:, 0].argmax())
    assert float((lab == truth).float().mean()) < 0.95
