"""Surface-first foreground of a :class:`~lumisurf.models.surface.SurfaceModel` (no-grad eval renders).

Trace each ray to its first crossing, composite a narrow band of samples around it with the model's own
sample renderer, and render the rays it cannot trust (near misses, semi-transparent bands with more behind,
unfinished traces) with the full sampler, so the result matches full volume rendering
(``tests/test_surface_first.py``) at a fraction of the samples.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from lumisurf.renderers.surface_first import (
    band_half_width,
    band_samples,
    clear_of_surface,
    descend,
    exit_trace,
    sphere_trace,
    trusted_hits,
)

# per-ray outputs [k, ...] of SurfaceModel._render_samples that a render keeps
PER_RAY_KEYS = ("rgb", "opacity", "depth", "normal", "albedo", "metallic", "roughness", "material_probs", "head_rgb")


def _place(k: int, parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Rows ``values`` [m, ...] of each (rows ``idx`` [m], values) placed in a zero tensor [k, ...]."""
    ref = parts[0][1]
    out = ref.new_zeros((k,) + tuple(ref.shape[1:]))
    for idx, values in parts:
        out[idx] = values
    return out


def _in_chunks(fn, tensors: tuple[Tensor, ...], chunk: int) -> dict:
    """``fn`` on ``chunk`` rows of every tensor at a time; per-ray keys concatenated, ``n_samples`` and
    ``inv_s`` taken from the first chunk."""
    parts = [fn(*(t[i : i + chunk] for t in tensors)) for i in range(0, max(tensors[0].shape[0], 1), chunk)]
    out = {key: torch.cat([p[key] for p in parts]) for key in PER_RAY_KEYS if key in parts[0]}
    out.update({key: parts[0][key] for key in ("n_samples", "inv_s") if key in parts[0]})
    return out


def _full(model, o: Tensor, d: Tensor, near: Tensor, far: Tensor, state, chunk: int = 1024) -> dict:
    """The full sampler on rays [m, ...], ``chunk`` rays at a time (its [chunk, S] tensors stay in cache);
    ``n_samples`` per ray."""
    full_state = replace(state, surface=None)
    return _in_chunks(lambda *c: model.render_foreground(*c, full_state, False), (o, d, near, far), chunk)


def _shade(model, o: Tensor, d: Tensor, t: Tensor, end: Tensor, state, chunk: int = 8192) -> dict:
    """The model's sample renderer on band samples ``t`` [m, S] (ending at ``end`` [m, 1]), ``chunk`` rays at a
    time: tracing gains from large batches, shading only costs memory ([chunk, S] samples through the heads)."""
    return _in_chunks(lambda *c: model.render_at_samples(*c, state, False), (o, d, t, end), chunk)


@torch.no_grad()
def surface_first_foreground(model, o: Tensor, d: Tensor, near: Tensor, far: Tensor, state) -> dict[str, Tensor]:
    """The k rays ``o``, ``d`` [k, 3] between ``near`` and ``far`` [k, 1]: the same per-ray outputs as the
    model's full foreground (``rgb``, ``opacity``, ``depth``, ``normal`` and the shading's extras); rays that
    pass clear of the surface are empty. ``n_samples`` is the mean field evaluations per ray."""
    cfg = state.surface
    k = o.shape[0]
    inv_s = float(model.variance.inv_s())
    min_step = min(max(0.5 / inv_s, 1e-4), 1e-2)

    def trace(t0: Tensor, t1: Tensor, rows: Tensor, approaching: bool):
        return sphere_trace(
            model.sdf.sdf, o[rows], d[rows], t0, t1, cfg.trace_steps, cfg.relax, min_step, cfg.refine, approaching
        )

    def needs_full(tr) -> Tensor:  # rays known to need the full sampler right after tracing
        return ~(trusted_hits(tr, inv_s, cfg.clear_width) | clear_of_surface(tr, inv_s, cfg.clear_width))

    pilot = torch.arange(0, k, 8, device=o.device)  # every 8th ray first: is surface-first worth it here?
    probe = trace(near[pilot, 0], far[pilot, 0], pilot, True)
    if float(needs_full(probe).float().mean()) > cfg.max_fallback:  # a messy field: the full sampler for all
        rest = _full(model, o, d, near, far, state)
        rest.update(
            n_samples=rest["n_samples"] + probe.evals / k,
            surface_fallback=k,
            gradients=o.new_zeros(k, 0, 3),
            inside=o.new_zeros(k, 0, dtype=torch.bool),
        )
        return rest
    everything = torch.arange(k, device=o.device)
    first = trace(near[:, 0], far[:, 0], everything, True)
    trusted = trusted_hits(first, inv_s, cfg.clear_width)
    rows = trusted.nonzero()[:, 0]  # a band around each clean crossing
    # the band: from width / inv_s of SDF in front of the crossing to where the ray is absorbed behind it
    # (SDF down to -width / inv_s) or the SDF turns back up (a thin part)
    t_hit = first.t[rows]
    start = t_hit - band_half_width(first.slope[rows], inv_s, cfg.band_width)
    stop = descend(
        model.sdf.sdf,
        o[rows],
        d[rows],
        t_hit,
        far[rows, 0],
        -cfg.band_width / inv_s,
        cfg.trace_steps,
        cfg.relax,
        min_step,
    )
    t, end = band_samples(start, stop, near[rows, 0], far[rows, 0], cfg.band_samples)
    band = _shade(model, o[rows], d[rows], t, end, state)
    # a band that stays semi-transparent (a thin part, an edge) is kept when the ray leaves the surface
    # behind it through a receding stretch (no density) and then stays clear of it
    keep = band["opacity"][:, 0] >= cfg.solid
    thin = (~keep).nonzero()[:, 0]
    b = rows[thin]
    t_exit, left = exit_trace(
        model.sdf.sdf, o[b], d[b], end[thin, 0], far[b, 0], cfg.trace_steps, cfg.relax, min_step, 0.5 / inv_s
    )
    behind = trace(t_exit, far[b, 0], b, False)
    keep[thin] = left & clear_of_surface(behind, inv_s, cfg.clear_width)
    done = clear_of_surface(first, inv_s, cfg.clear_width)  # empty rays
    done[rows[keep]] = True
    fb = (~done).nonzero()[:, 0]
    rest = _full(model, o[fb], d[fb], near[fb], far[fb], state)
    out = {key: _place(k, [(rows[keep], band[key][keep]), (fb, rest[key])]) for key in PER_RAY_KEYS if key in band}
    evals = probe.evals + first.evals + behind.evals + rows.numel() * cfg.band_samples + fb.numel() * rest["n_samples"]
    out.update(
        gradients=o.new_zeros(k, 0, 3),
        inside=o.new_zeros(k, 0, dtype=torch.bool),
        inv_s=band["inv_s"],
        n_samples=evals / max(k, 1),
        surface_fallback=fb.numel(),
    )
    return out
