"""A trainable sparse voxel field: geometry on shared corners, spherical-harmonics color per voxel.

It holds no data or poses: :meth:`SparseVoxelModel.rasterize_view` takes a camera. Color is evaluated once per
voxel and view, along the direction from the camera to the voxel centre (SVRaster), as
``max(0, sum_k sh_k Y_k(d) + 0.5)``. Structural changes (:meth:`SparseVoxelModel.restructure`) replace the
parameters and carry the optimizer's per-element state through the same linear maps.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor, nn

from lumisurf.encodings.spherical_harmonics import sh_basis
from lumisurf.mesh.tsdf import fuse_rendered_depth
from lumisurf.models.protocol import SceneModel
from lumisurf.voxels.binning import bin_voxels
from lumisurf.voxels.raster import rasterize_tiles
from lumisurf.voxels.raster_torch import STEP_SCALE, GeometryMode, corner_weights
from lumisurf.voxels.soft import SoftRaster, margin
from lumisurf.voxels.structure import Remap, VoxelOctree


class SparseVoxelModel(SceneModel):
    """``mode`` density (raw values, exp-linear activation) or sdf (signed distances, NeuS opacity);
    ``model.kind=voxels`` (see :class:`lumisurf.models.protocol.SceneModel`)."""

    kind = "voxels"
    stores_voxels = True
    config_sections = ("voxels", "model.kind", "model.nero", "model.assignment", "loss.segmentation")
    single_process_why = "sparse voxels train on one process (their octree is subdivided and pruned in place)"

    def __init__(
        self,
        tree: VoxelOctree,
        mode: GeometryMode = "density",
        sh_bands: int = 4,
        geo_init: Tensor | float = -10.0,
        inv_s: float = 50.0,
        n_samples: int = 1,
        shading: nn.Module | None = None,
    ):
        super().__init__()
        self.shading = shading  # None: SH color per voxel; else deferred per-pixel shading (voxels/deferred.py)
        self.tree, self.mode, self.sh_bands, self.n_samples = tree, mode, sh_bands, n_samples
        geo = torch.as_tensor(geo_init, dtype=torch.float32)
        self.geo = nn.Parameter(geo.expand(tree.n_corners).clone() if geo.dim() == 0 else geo.clone())
        self.sh0 = nn.Parameter(torch.zeros(len(tree), 1, 3))  # SH DC (color 0.5 at the start)
        self.shs = nn.Parameter(torch.zeros(len(tree), sh_bands**2 - 1, 3))  # higher bands
        self.log_inv_s = nn.Parameter(torch.tensor(math.log(inv_s)))  # used in sdf mode only
        self.register_buffer("inv_s_floor", torch.tensor(0.0))  # sdf mode: the sharpness never drops below this
        self.priority = nn.Parameter(torch.ones(len(tree)))  # never optimised: its grad is the subdivision priority
        self.register_buffer("tree_path", tree.path.clone())  # the layout travels with the state dict
        self.register_buffer("tree_level", tree.level.clone())
        self.active_bands = sh_bands
        self.soft: SoftRaster | None = None  # soft rasterization variants (voxels/soft.py; pixel_angle set per view)

    @classmethod
    def from_state(
        cls,
        state: dict,
        mode: GeometryMode,
        sh_bands: int,
        scene_min: Tensor,
        extent: float,
        shading: nn.Module | None = None,
    ):
        """An empty model shaped like the saved ``state`` (its ``tree_path`` / ``tree_level``), to load it into."""
        tree = VoxelOctree(state["tree_path"], state["tree_level"], scene_min, extent)
        return cls(tree, mode=mode, sh_bands=sh_bands, geo_init=state["geo"], shading=shading)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As ``nn.Module``'s, after adopting the saved layout (``tree_path`` / ``tree_level``) when it differs.

        The parameters are resized in place (``.data``), so an optimizer holding them stays valid and can load
        the optimizer state saved with ``state_dict`` (the divergence guard's rollback relies on this).
        """
        if "inv_s_floor" not in state_dict:  # checkpoints from before the inv_s schedule
            state_dict = {**state_dict, "inv_s_floor": torch.tensor(0.0)}
        path, level = state_dict["tree_path"], state_dict["tree_level"]
        if path.shape != self.tree_path.shape or not torch.equal(path.to(self.tree_path.device), self.tree_path):
            dev = self.geo.device
            self.tree = VoxelOctree(path.to(dev), level.to(dev), self.tree.scene_min.to(dev), self.tree.extent)
            self.tree_path, self.tree_level = self.tree.path.clone(), self.tree.level.clone()
            for name in ("geo", "sh0", "shs", "priority"):
                param = getattr(self, name)
                param.data = param.new_empty(state_dict[name].shape)
                param.grad = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def param_groups(self, cfg) -> list[dict]:
        """Adam parameter groups (rates from ``cfg.voxels.train``): geometry, SH DC, higher SH bands, (sdf mode)
        log inv_s, (deferred) shading."""
        t = cfg.voxels.train
        groups = [
            {"params": [self.geo], "lr": t.lr_geo, "name": "geo"},
            {"params": [self.sh0], "lr": t.lr_sh0, "name": "sh0"},
            {"params": [self.shs], "lr": t.lr_shs, "name": "shs"},
        ]
        if self.mode == "sdf":
            groups.append({"params": [self.log_inv_s], "lr": t.lr_inv_s, "name": "inv_s"})
        if self.shading is not None:
            groups.append({"params": list(self.shading.parameters()), "lr": t.lr_shading, "name": "shading"})
        return groups

    @property
    def inv_s(self) -> Tensor:
        """NeuS sharpness (1 / scene units): the learned value, at least ``inv_s_floor`` (a schedule)."""
        return torch.maximum(self.log_inv_s.exp(), self.inv_s_floor)

    def corners(self) -> Tensor:  # [N, 8]
        return self.geo[self.tree.vox_key]

    def field(self, points: Tensor, outside: float = 1.0) -> Tensor:
        """Trilinear geometry value ``[P]`` at ``points`` ``[P, 3]`` (SDF in sdf mode, raw density otherwise);
        ``outside`` where no voxel holds the point (pruned space is empty: positive SDF)."""
        v = self.tree.locate(points)
        lo, size = self.tree.boxes()
        safe = v.clamp_min(0)
        u = ((points - lo[safe]) / size[safe, None]).clamp(0.0, 1.0)
        val = (corner_weights(u) * self.corners()[safe]).sum(-1)
        return torch.where(v >= 0, val, torch.full_like(val, outside))

    def surface_sdf(self, points: Tensor) -> Tensor:
        """A signed function ``[P]`` whose zero set is the surface (negative inside), for marching cubes.

        sdf mode: the SDF (pruned space +1). density mode: ``raw* - raw``, with ``raw*`` the raw density that
        makes a segment across the finest voxel half opaque (pruned space empty).
        """
        if self.mode == "sdf":
            return self.field(points, outside=1.0)
        sigma = math.log(2.0) / (STEP_SCALE * self.finest_size)
        raw_star = sigma if sigma > 1.1 else 1.1 * (math.log(sigma) + 1.0 - math.log(1.1))
        return raw_star - self.field(points, outside=raw_star - 1.0)

    def voxel_colors(self, eye: Tensor) -> Tensor:
        """Color ``[N, 3]`` of every voxel seen from ``eye`` ``[3]`` (first ``active_bands`` SH bands)."""
        d = self.tree.centres() - eye
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self._sh_color(torch.arange(len(self.tree), device=d.device), d)

    def _sh_color(self, vox: Tensor, d: Tensor) -> Tensor:
        """Color ``[P, 3]`` of voxels ``vox`` ``[P]`` seen along unit directions ``d`` ``[P, 3]``."""
        k = self.active_bands**2
        basis = sh_basis(d, self.active_bands)  # [P, k]
        sh = torch.cat([self.sh0[vox], self.shs[vox, : k - 1]], 1)  # [P, k, 3]
        return ((basis[..., None] * sh).sum(1) + 0.5).clamp_min(0.0)

    @torch.no_grad()
    def point_colors(self, points: Tensor, dirs: Tensor) -> Tensor:
        """Color ``[P, 3]`` at surface points ``[P, 3]`` seen along unit ``dirs`` ``[P, 3]`` (eye towards point):
        the SH color of the voxel holding the point, else of the one half a finest voxel behind or in front of
        it along the view; grey where none does (mesh vertices sit on voxel faces)."""
        step = 0.5 * self.finest_size
        vox = torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
        for shift in (0.0, step, -step):
            miss = vox < 0
            vox[miss] = self.tree.locate(points[miss] + shift * dirs[miss]).long()
        out = torch.full_like(points, 0.5)
        hit = vox >= 0
        out[hit] = self._sh_color(vox[hit], dirs[hit])
        return out.clamp(0.0, 1.0)

    def rasterize_view(self, cameras, cam: int, background: Tensor, backend: str = "auto") -> dict[str, Tensor]:
        """All pixels of camera ``cam`` (row-major ``[H * W, ...]``); outputs of
        :func:`lumisurf.voxels.raster.rasterize_tiles`."""
        c2w = cameras.c2w[cam]
        lo, size = self.tree.boxes()
        soft = None if self.soft is None else replace(self.soft, pixel_angle=1.0 / float(cameras.fx[cam]))
        grow = margin(lo, size, c2w[:3, 3], soft) if soft is not None and soft.footprint else None
        blo, bsize = (lo, size) if grow is None else (lo - grow[:, None], size + 2.0 * grow)  # boxes to bin
        binned = bin_voxels(
            self.tree.path,
            blo,
            bsize,
            c2w,
            float(cameras.fx[cam]),
            float(cameras.fy[cam]),
            float(cameras.cx[cam]),
            float(cameras.cy[cam]),
            cameras.width,
            cameras.height,
            backend=backend,
        )
        o, d, _, _ = cameras.pixel_rays(cam)
        colors = self.voxel_colors(c2w[:3, 3]) if self.shading is None else lo.new_zeros(lo.shape)
        out = rasterize_tiles(
            binned,
            o,
            d,
            lo,
            size,
            self.corners(),
            colors,
            background,
            cameras.width,
            cameras.height,
            mode=self.mode,
            inv_s=self.inv_s,
            backend=backend,
            n_samples=self.n_samples,
            priority=self.priority,
            soft=soft,
        )
        if self.shading is not None:
            out.update(self.shading(out, o, d, background))
        return out

    # ------------------------------------------------------------------ the model protocol
    @property
    def surface_needs_cameras(self) -> bool:
        return self.mode == "density"  # density is meshed by TSDF fusion of the median depth (SVRaster)

    def surface_function(self, cameras=None, resolution: int = 256, progress: bool = False):
        """The voxel SDF, or for density voxels the TSDF fused from the median depth of every view of
        ``cameras`` (the level set at half opacity without cameras). Truncation: 4 finest voxels or 3 grid
        cells, whichever is larger."""
        if not self.surface_needs_cameras or cameras is None:
            return self.surface_sdf
        bg = torch.zeros(3, device=self.geo.device)

        def render(cams, i):
            out = self.render_camera(cams, i, bg)
            return out["median_depth"][..., 0], out["opacity"][..., 0] > 0.5

        trunc = max(4.0 * self.finest_size, 3.0 * 2.0 / resolution)
        return fuse_rendered_depth(render, cameras.to(self.geo.device), trunc, progress)  # moved once

    def vertex_shading(self, vertices, normals, chunk: int = 8192) -> dict:
        """The SH color of the voxel at each vertex, seen along the mesh normal (required: voxels have none)."""
        if normals is None:
            raise ValueError("sparse voxels shade vertices along the mesh normals: pass them")
        x = torch.as_tensor(vertices, device=self.geo.device)
        n = torch.as_tensor(normals, dtype=x.dtype, device=x.device)
        rgb = torch.cat([self.point_colors(p, -d) for p, d in zip(x.split(chunk), n.split(chunk))])
        return {"rgb": rgb.cpu().numpy()}

    def occupied_cells(self) -> Tensor:
        return self.tree.centres().detach()

    @torch.no_grad()
    def render_camera(
        self, cameras, cam: int, bg_color: Tensor, state=None, chunk: int = 1024, downscale: int = 1
    ) -> dict[str, Tensor]:
        """Maps ``[h, w, C]`` of camera ``cam`` at 1 / ``downscale`` resolution, as the field models give them:
        rgb, opacity, depth (expected ray distance, not divided by opacity), normal (weighted, outward), the
        deferred shading's material maps (and material_probs of the mixture) when there is one, and
        median_depth (where the transmittance falls below one half; 0 where it never does)."""
        cams = downscaled(cameras, downscale)
        out = self.rasterize_view(cams, cam, bg_color.reshape(3))  # one whole view: no chunks, no render state
        h, w = cams.height, cams.width
        keys = (
            "rgb",
            "opacity",
            "depth",
            "normal",
            "median_depth",
            "albedo",
            "metallic",
            "roughness",
            "material_probs",
        )
        return {k: out[k].reshape(h, w, -1) for k in keys if k in out}

    @property
    def finest_size(self) -> float:
        """Edge length of the smallest voxel (scene units)."""
        return float(self.tree.extent) * 2.0 ** -int(self.tree.level.max())

    def restructure(self, tree: VoxelOctree, remap: Remap, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Adopt ``tree`` (from :meth:`VoxelOctree.subdivide` / ``select`` of the current one): parameters and
        the optimizer's per-element state go through ``remap``."""
        new = {
            "geo": remap.corners(self.geo.detach()),
            "sh0": remap.voxels(self.sh0.detach()),
            "shs": remap.voxels(self.shs.detach()),
        }
        self.priority = nn.Parameter(torch.ones(len(tree), device=self.geo.device))
        self.tree_path, self.tree_level = tree.path.clone(), tree.level.clone()
        for name, value in new.items():
            old = getattr(self, name)
            param = nn.Parameter(value.contiguous())
            if optimizer is not None:
                _swap_in_optimizer(optimizer, old, param, remap.corners if name == "geo" else remap.voxels)
            setattr(self, name, param)
        self.tree = tree


def downscaled(cameras, factor: int):
    """The same cameras at 1 / ``factor`` resolution (intrinsics scaled; pixel centres kept)."""
    if factor == 1:
        return cameras
    return replace(
        cameras,
        fx=cameras.fx / factor,
        fy=cameras.fy / factor,
        cx=cameras.cx / factor,
        cy=cameras.cy / factor,
        width=cameras.width // factor,
        height=cameras.height // factor,
    )


def _swap_in_optimizer(optimizer: torch.optim.Optimizer, old: nn.Parameter, new: nn.Parameter, mapping) -> None:
    """Replace ``old`` by ``new`` in the optimizer; tensors of its state shaped like ``old`` are mapped."""
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
    state = optimizer.state.pop(old, None)
    if state is not None:
        optimizer.state[new] = {
            k: mapping(v) if torch.is_tensor(v) and v.shape == old.shape else v for k, v in state.items()
        }
