import math

import torch

from lumisurf.config import BackgroundConfig, ColorConfig, SDFConfig
from lumisurf.encodings.frequency import FrequencyEncoding
from lumisurf.fields.background import BackgroundNeRF
from lumisurf.fields.base import build_sdf
from lumisurf.fields.variance import Variance
from lumisurf.shading.neus_color import NeuSColor


def small_sdf(**kw):
    return build_sdf(SDFConfig(hidden=64, layers=4, skip_in=(2,), feature_dim=8, **kw))


def test_frequency_encoding_values():
    enc = FrequencyEncoding(1, 2)
    x = torch.tensor([[0.5]])
    out = enc(x)
    assert out.shape == (1, 5) and enc.output_dim == 5
    want = [0.5, math.sin(0.5), math.cos(0.5), math.sin(1.0), math.cos(1.0)]
    assert torch.allclose(out[0], torch.tensor(want), atol=1e-6)


def test_geometric_init_is_a_sphere():
    """IDR geometric init (approximate, sharper with width): mean SDF ~ |x| - r0, increasing outwards."""
    torch.manual_seed(0)
    sdf = build_sdf(SDFConfig(init_radius=0.5))  # the published 8x256 network
    dirs = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    means = []
    for r in (0.3, 0.5, 0.8):
        s = sdf.sdf(dirs * r)
        means.append(s.mean().item())
        assert abs(means[-1] - (r - 0.5)) < 0.1, (r, means[-1])
    assert means[0] < means[1] < means[2]


def test_sdf_shapes_and_gradient_matches_finite_differences():
    torch.manual_seed(0)
    sdf = small_sdf().double()
    x = torch.rand(16, 3, dtype=torch.float64) - 0.5
    s, f, g = sdf.sdf_and_gradient(x, create_graph=False)
    assert s.shape == (16,) and f.shape == (16, 8) and g.shape == (16, 3)
    eps = 1e-5
    fd = torch.stack(
        [(sdf.sdf(x + eps * e) - sdf.sdf(x - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=x.dtype)], -1
    )
    assert torch.allclose(g, fd, atol=1e-6)


def test_eikonal_gradient_trains_the_field():
    sdf = small_sdf()
    x = torch.rand(32, 3) - 0.5
    _, _, g = sdf.sdf_and_gradient(x, create_graph=True)
    ((g.norm(dim=-1) - 1) ** 2).mean().backward()
    grads = [p.grad for p in sdf.parameters() if p.grad is not None]
    assert grads and any(gr.abs().sum() > 0 for gr in grads)


def test_variance_and_heads():
    v = Variance(0.3)
    assert torch.isclose(v.inv_s(), torch.tensor(math.exp(3.0)))
    color = NeuSColor(ColorConfig(hidden=16, layers=2, weight_norm=False), feature_dim=8)
    with torch.no_grad():  # a zero output layer leaves sigmoid(bias): hand-computed colors
        color.mlp[-1].weight.zero_()
        color.mlp[-1].bias.copy_(torch.tensor([0.0, math.log(3.0), -math.log(3.0)]))
    rgb = color(torch.rand(5, 3), torch.rand(5, 3), torch.rand(5, 3), torch.rand(5, 8))
    assert torch.allclose(rgb, torch.tensor([0.5, 0.75, 0.25]).expand(5, 3), atol=1e-6)
    bg = BackgroundNeRF(BackgroundConfig(hidden=16, layers=2, multires=2, multires_view=1))
    sigma, rgb = bg(torch.rand(7, 4), torch.rand(7, 3))
    assert sigma.shape == (7,) and (sigma >= 0).all() and rgb.shape == (7, 3)


def test_color_net_reflected_view_input():
    """view_input=reflected encodes the ray mirrored about the unit normal and appends n.d."""
    color = NeuSColor(ColorConfig(hidden=8, layers=2, view_input="reflected"), feature_dim=4)
    seen = []
    enc = color.dir_enc
    enc.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    d = torch.tensor([[1.0, 0.0, -1.0]]) / math.sqrt(2.0)  # 45 degrees down onto the plane z = 0
    rgb = color(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 2.0]]), d, torch.zeros(1, 4))  # unnormalised n
    assert torch.allclose(seen[0], torch.tensor([[1.0, 0.0, 1.0]]) / math.sqrt(2.0), atol=1e-6)
    assert color.mlp[0].in_features == 3 + 3 + enc.output_dim + 1 + 4 and rgb.shape == (1, 3)
