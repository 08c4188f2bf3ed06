"""Pixel samplers (uniform, soft mining, context prior, quadtree), their error maps, and S3IM."""

import math

import pytest
import torch

from lumisurf.config import apply_overrides
from lumisurf.data.pixel_sampling.adaptive import (
    PIXEL_SAMPLERS,
    build_pixel_sampler,
    color_std_map,
    soft_mining_weights,
    subdivide_levels,
)
from lumisurf.data.pixel_sampling.base import PixelBatch, UniformPixelSampler
from lumisurf.data.pixel_sampling.error_maps import Categorical, ErrorMaps, bilinear_lookup
from lumisurf.data.scene import Split
from lumisurf.losses.s3im import s3im_loss
from lumisurf.presets import preset_config
from lumisurf.sampler_config import QuadtreeConfig, SamplerConfig, SoftMiningConfig
from lumisurf.train.run_dir import RunDir
from lumisurf.train.trainer import Trainer

NAMES = ["uniform", "soft_mining", "context", "quadtree"]
N, H, W = 3, 16, 20


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add barrier waits on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def coded_split(masks: bool = True) -> Split:
    """Images whose color encodes (view, row, col); masks encode row parity."""
    cam, row, col = torch.meshgrid(torch.arange(N), torch.arange(H), torch.arange(W), indexing="ij")
    images = torch.stack([cam / N, row / H, col / W], dim=-1).float()
    m = (row % 2).float() if masks else None
    return Split(None, images, m)


def cfg_for(name: str, soft_mining=None, quadtree=None, **kw) -> SamplerConfig:
    base = dict(
        pixels=name,
        error_map_downscale=4,
        pixel_weights=True,
        soft_mining=SoftMiningConfig(**(soft_mining or {})),
        quadtree=QuadtreeConfig(**{"every": 3, **(quadtree or {})}),
    )
    base.update(kw)
    return SamplerConfig(**base)


def run_steps(sampler, steps: int, n_rays: int, gen: torch.Generator, error_fn) -> PixelBatch:
    batch = None
    for step in range(steps):
        batch = sampler.sample(n_rays, gen)
        sampler.update(batch, error_fn(batch), step)
    return batch


def left_band_error(batch: PixelBatch) -> torch.Tensor:
    return torch.where(batch.px < W / 4, 1.0, 0.01)


def test_registry_and_import_path():
    assert PIXEL_SAMPLERS.names() == sorted(NAMES)
    assert isinstance(build_pixel_sampler(SamplerConfig(), coded_split(), "cpu"), UniformPixelSampler)
    assert PixelBatch(*([torch.zeros(1)] * 4), None).weight is None  # new field defaults to None


@pytest.mark.parametrize("name", NAMES)
def test_batches_are_valid(name):
    sampler = build_pixel_sampler(cfg_for(name), coded_split(), "cpu")
    gen = torch.Generator().manual_seed(1)
    batch = run_steps(sampler, 5, 96, gen, left_band_error)
    assert batch.cam_idx.shape == (96,) and batch.px.shape == (96,) and batch.rgb.shape == (96, 3)
    col, row = batch.px - 0.5, batch.py - 0.5
    assert torch.equal(col, col.round()) and torch.equal(row, row.round())  # pixel centres
    assert bool((col >= 0).all() and (col < W).all() and (row >= 0).all() and (row < H).all())
    assert bool((batch.cam_idx >= 0).all() and (batch.cam_idx < N).all())
    expected = torch.stack([batch.cam_idx / N, row / H, col / W], dim=-1).float()
    assert torch.allclose(batch.rgb, expected)
    assert torch.equal(batch.mask[:, 0], row % 2)
    if name == "uniform":
        assert batch.weight is None
    else:
        assert batch.weight.shape == (96, 1) and bool(torch.isfinite(batch.weight).all())
        assert bool((batch.weight > 0).all()) and abs(float(batch.weight.mean()) - 1.0) < 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_with_seeded_generator(name):
    def draw():
        sampler = build_pixel_sampler(cfg_for(name), coded_split(), "cpu")
        batch = run_steps(sampler, 6, 64, torch.Generator().manual_seed(7), left_band_error)
        return torch.stack([batch.cam_idx.float(), batch.px, batch.py])

    assert torch.equal(draw(), draw())


def test_error_maps_ema_fill_and_bilinear():
    maps = ErrorMaps(1, 8, 8, 2, 2, momentum=0.5, device="cpu")
    assert torch.equal(maps.values(), torch.ones(1, 2, 2))  # nothing seen yet
    cam = torch.zeros(3, dtype=torch.long)
    maps.update(cam, torch.tensor([1.5, 2.5, 6.5]), torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.2, 0.4, 1.0]))
    v = maps.values()[0]
    assert v[0, 0] == pytest.approx(0.3) and v[0, 1] == pytest.approx(1.0)  # first visit: the mean
    assert v[1, 0] == pytest.approx(0.65) and v[1, 1] == pytest.approx(0.65)  # unvisited: mean of seen
    maps.update(cam[:1], torch.tensor([0.5]), torch.tensor([0.5]), torch.tensor([0.7]))
    assert maps.values()[0, 0, 0] == pytest.approx(0.3 + 0.5 * (0.7 - 0.3))  # EMA
    grid = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    # cell centres of a 2x2 grid over 8x8 pixels sit at 2 and 6: (4, 4) is their midpoint
    mid = bilinear_lookup(grid, cam[:1], torch.tensor([4.0]), torch.tensor([4.0]), 8, 8)
    corner = bilinear_lookup(grid, cam[:1], torch.tensor([0.0]), torch.tensor([7.9]), 8, 8)
    assert float(mid) == pytest.approx(1.5) and float(corner) == pytest.approx(2.0)


def test_categorical_frequencies():
    w = torch.tensor([0.0, 1.0, 3.0, 0.0, 4.0] * 500)
    cat = Categorical(w, block=64)
    idx = cat.sample(50_000, torch.Generator().manual_seed(0))
    assert bool((w[idx] > 0).all())
    freq = torch.bincount(idx % 5, minlength=5).float() / idx.numel()
    assert torch.allclose(freq, torch.tensor([0.0, 0.125, 0.375, 0.0, 0.5]), atol=0.01)


def test_soft_mining_weights_hand_computed():
    w = soft_mining_weights(torch.tensor([1.0, 4.0]), alpha=0.5)  # 1/sqrt(q) = [1, 0.5]
    assert torch.allclose(w, torch.tensor([4 / 3, 2 / 3]))
    assert torch.equal(soft_mining_weights(torch.tensor([1.0, 4.0]), alpha=0.0), torch.ones(2))


def test_soft_mining_concentrates_on_high_error():
    sampler = build_pixel_sampler(cfg_for("soft_mining", soft_mining=dict(warmup=10)), coded_split(), "cpu")
    gen = torch.Generator().manual_seed(0)
    first = sampler.sample(256, gen)
    assert torch.allclose(first.weight, torch.ones(256, 1))  # alpha = 0 before any step
    sampler.update(first, left_band_error(first), 0)
    run_steps(sampler, 60, 256, gen, left_band_error)
    fractions, w_in, w_out = [], [], []
    for _ in range(10):
        batch = sampler.sample(256, gen)
        inside = batch.px < W / 4
        fractions.append(inside.float().mean())
        w_in.append(batch.weight[inside].mean())
        w_out.append(batch.weight[~inside].mean())
        sampler.update(batch, left_band_error(batch), 100)
    assert float(torch.stack(fractions).mean()) > 0.32  # the region covers 1/4 of the pixels
    assert float(torch.stack(w_in).mean()) < float(torch.stack(w_out).mean())  # 1/Q^alpha correction


def test_color_std_map_hand_computed():
    img = torch.zeros(1, 3, 4, 3)
    img[:, :, 2:] = 1.0  # step edge between columns 1 and 2
    std = color_std_map(img)[0]
    # column 1 sees columns 0, 1, 2 = (0, 0, 1): var = 1/3 - 1/9; grey of equal channels = the std
    assert std[1, 1] == pytest.approx(math.sqrt(2 / 9), rel=1e-5)
    assert std[1, 2] == pytest.approx(math.sqrt(2 / 9), rel=1e-5)
    assert float(std[:, 0].abs().max()) < 1e-6 and float(std[:, 3].abs().max()) < 1e-6


def test_context_prefers_edges():
    images = torch.zeros(N, H, W, 3)
    images[:, :, W // 2 :] = 1.0  # edge band: columns W/2 - 1 and W/2
    sampler = build_pixel_sampler(cfg_for("context", pixel_weights=False), Split(None, images, None), "cpu")
    batch = sampler.sample(2000, torch.Generator().manual_seed(0))
    band = ((batch.px - 0.5 - (W // 2 - 0.5)).abs() < 1).float().mean()
    assert float(band) > 0.45  # half the rays from the prior (~all on the band) + the uniform half
    assert 2 / W < 0.45


def test_quadtree_subdivides_where_error_is_high():
    sampler = build_pixel_sampler(
        cfg_for("quadtree", quadtree=dict(every=0, max_depth=3, init_depth=1)), coded_split(), "cpu"
    )
    assert sampler.area.sum() == N * H * W  # leaves tile every view
    gen = torch.Generator().manual_seed(0)

    def top_left(batch):
        return torch.where((batch.px < W / 2) & (batch.py < H / 2), 0.5, 0.001)

    run_steps(sampler, 30, 256, gen, top_left)
    sampler.subdivide()
    g = sampler.g
    assert bool((sampler.level[:, : g // 2, : g // 2] == 3).all())
    assert bool((sampler.level[:, g // 2 :, :] == 1).all() and (sampler.level[:, :, g // 2 :] == 1).all())
    assert sampler.area.sum() == N * H * W and sampler.area.numel() == N * (16 + 3)
    batch = sampler.sample(1000, gen)
    assert float(((batch.px < W / 2) & (batch.py < H / 2)).float().mean()) > 0.7


def test_subdivide_levels_respects_leaf_budget():
    err = torch.zeros(1, 4, 4)
    err[0, :2, :2] = 1.0
    err[0, 2:, 2:] = 0.5
    level = subdivide_levels(err, init_depth=0, max_depth=2, threshold=0.1, max_leaves=7)
    assert bool((level[0, :2, :2] == 2).all())  # largest error split first: 1 -> 4 -> 7 leaves
    assert bool((level[0, 2:, 2:] == 1).all())


# ----------------------------------------------------------------------------- S3IM


def test_s3im_identical_is_zero():
    x = torch.rand(256, 3, generator=torch.Generator().manual_seed(0))
    loss = s3im_loss(x, x.clone(), generator=torch.Generator().manual_seed(1))
    assert abs(float(loss)) < 1e-6


def test_s3im_hand_computed():
    pred = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [0.2, 0.2, 0.2]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.2, 0.5], [0.5, 0.4, 0.6], [0.9, 0.8, 0.7], [0.1, 0.3, 0.2]], dtype=torch.float64)
    # one 2x2 virtual patch; a 2-tap Gaussian is uniform, so SSIM uses the plain population moments
    c1, c2, ssims = 0.01**2, 0.03**2, []
    for ch in range(3):
        a, b = pred[:, ch].tolist(), target[:, ch].tolist()
        ma, mb = sum(a) / 4, sum(b) / 4
        va = sum(v * v for v in a) / 4 - ma * ma
        vb = sum(v * v for v in b) / 4 - mb * mb
        cov = sum(u * v for u, v in zip(a, b)) / 4 - ma * mb
        ssims.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    loss = s3im_loss(pred, target, kernel=2, stride=2, repeats=1, patch_height=2)
    assert float(loss) == pytest.approx(1 - sum(ssims) / 3, abs=1e-12)


def test_s3im_gradient_and_determinism():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(8, 3, generator=gen, dtype=torch.float64)
    pred = torch.rand(8, 3, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(p):
        return s3im_loss(
            p, target, kernel=2, stride=2, repeats=3, patch_height=4, generator=torch.Generator().manual_seed(3)
        )

    assert torch.autograd.gradcheck(f, (pred,))
    f(pred).backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    with torch.no_grad():
        assert float(f(pred)) == float(f(pred))
    with pytest.raises(ValueError):
        s3im_loss(pred[:3], target[:3], kernel=4)


# ----------------------------------------------------------------------------- training smoke

TINY = [
    "train.batch_rays=32",
    "train.val_every=0",
    "train.ckpt_every=0",
    "train.max_steps=2",
    "train.finalize=false",
    "train.device=cpu",
    "sampler.n_samples=8",
    "sampler.n_importance=8",
    "sampler.up_sample_steps=2",
    "model.background.n_samples=4",
    "model.sdf.hidden=32",
    "model.sdf.layers=3",
    "model.sdf.skip_in=[]",
    "model.sdf.feature_dim=32",
    "model.color.hidden=32",
    "model.color.layers=2",
    "model.background.hidden=16",
    "model.background.layers=2",
]


@pytest.mark.parametrize("name,s3im", [(n, 0.0) for n in NAMES] + [("soft_mining", 0.5)])
def test_two_training_steps(name, s3im, tiny_scene, tmp_path):
    cfg = apply_overrides(
        preset_config("neus"),
        TINY + [f"sampler.pixels={name}", f"loss.s3im_weight={s3im}", "sampler.error_map_downscale=4"],
    )
    run = RunDir(tmp_path / name)
    run.prepare_new(cfg, force=False, resume=False)
    trainer = Trainer(cfg, run, scene=tiny_scene, progress=False)
    assert type(trainer.sampler) is PIXEL_SAMPLERS.get(name)
    scalars = trainer.train_step()
    trainer.step += 1
    assert all(math.isfinite(v) for v in scalars.values())
    if s3im > 0:
        assert 0 <= scalars["loss_s3im"] <= 2
        lc = cfg.loss
        parts = {
            "loss_rgb": lc.rgb_weight,
            "loss_eikonal": lc.eikonal_weight,
            "loss_mask": lc.mask_weight,
            "loss_s3im": lc.s3im_weight,
        }
        assert scalars["loss"] == pytest.approx(sum(w * scalars.get(k, 0.0) for k, w in parts.items()), rel=1e-5)
    else:
        assert "loss_s3im" not in scalars
    if name in ("soft_mining", "quadtree"):
        assert bool((trainer.sampler.errors.visits > 0).any())  # update() was fed
    result = trainer.fit()
    assert result.steps == 2 and all(torch.isfinite(p).all() for p in trainer.model.parameters())
