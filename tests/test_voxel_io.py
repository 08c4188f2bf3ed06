"""Voxel set export / import: the file round-trips to the same renders; the PLY has one vertex per voxel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumisurf.errors import LumisurfError
from lumisurf.voxels.io import load_voxels, save_voxels, write_voxel_ply


def _model():
    from test_voxel_model import CAMS, _sphere_model

    return _sphere_model("sdf"), CAMS


def test_round_trip_renders_the_same(tmp_path):
    model, cams = _model()
    with torch.no_grad():
        model.shs.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    path = save_voxels(model, tmp_path / "voxels.pt")
    back = load_voxels(path)
    assert back.mode == "sdf" and torch.equal(back.tree.path, model.tree.path)
    with torch.no_grad():
        a, b = model.rasterize_view(cams, 0, torch.ones(3)), back.rasterize_view(cams, 0, torch.ones(3))
    assert torch.allclose(a["rgb"], b["rgb"]) and torch.allclose(a["opacity"], b["opacity"])


def test_ply_has_one_vertex_per_voxel_in_the_world_frame(tmp_path):
    import trimesh

    model, _ = _model()
    to_world = torch.eye(4)
    to_world[:3, :3] *= 2.0
    to_world[:3, 3] = torch.tensor([1.0, 0.0, -1.0])
    cloud = trimesh.load(write_voxel_ply(model, tmp_path / "voxels.ply", to_world))
    assert len(cloud.vertices) == len(model.tree)
    expected = model.tree.centres().numpy() * 2.0 + np.array([1.0, 0.0, -1.0])
    assert np.allclose(np.asarray(cloud.vertices), expected, atol=1e-5)
    size = cloud.metadata["_ply_raw"]["vertex"]["data"]["size"]
    assert np.allclose(size, 2.0 * 0.25)  # level-3 voxels of a 2-unit cube, scaled by 2


def test_load_rejects_other_files(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(LumisurfError, match="not a lumisurf voxel export"):
        load_voxels(tmp_path / "other.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    with pytest.raises(LumisurfError, match="cannot read"):
        load_voxels(tmp_path / "broken.pt")
