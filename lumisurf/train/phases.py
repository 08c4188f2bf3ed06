"""Stage I phase schedule, phases A-E: which losses are on and which parameter groups train when.

A geometry first (rgb + eikonal + mask); B hash grid with feature TV; C soft material segmentation +
material heads (consistency / entropy / boundary / energy), the assignment at a small lr; D optional EM
alternation between heads+geometry and the assignment; E Stage II (outside Stage I: it only marks the end).

Optimizer param groups are matched by their ``"name"`` key (one of ``GROUPS``); unnamed groups are left
alone. Frozen groups get lr 0 (Adam then leaves them unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROUPS = ("sdf", "variance", "color", "shading", "assignment", "heads", "background")
GEOMETRY_LOSSES = ("rgb", "eikonal", "mask")
SEGMENTATION_LOSSES = (
    "entropy",
    "sparsity",
    "consistency",
    "boundary",
    "energy",
    "material_range",
    "smoothness",
    "warm_start",
    "metal_prior",
    "lift",
)


@dataclass
class PhaseConfig:
    """One phase: lasts until ``until_fraction`` of the training steps."""

    name: str
    until_fraction: float
    active_losses: tuple[str, ...] = GEOMETRY_LOSSES
    trainable: tuple[str, ...] = ("sdf", "variance", "color", "background")
    lr_scale: dict[str, float] = field(default_factory=dict)  # trainable groups not named: 1.0
    em_every: int = 0  # > 0: alternate blocks of em_every steps: heads+geometry, then assignment only

    def is_active(self, loss: str) -> bool:
        return loss in self.active_losses


def default_phases(
    ends: tuple[float, ...] = (0.1, 0.3, 0.7, 1.0), em_every: int = 0, assignment_lr_scale: float = 0.1
) -> list[PhaseConfig]:
    """The A-E phases; ``ends`` = fractions where A, B, C, D end (E is the zero-length end marker)."""
    if len(ends) != 4 or any(b < a for a, b in zip(ends, ends[1:])):
        raise ValueError(f"phase ends must be 4 non-decreasing fractions, got {ends}")
    # the shading model (NeuS color, or the heads and their shared lights) trains from the start: the rgb
    # loss that shapes the geometry goes through it; phase C switches the assignment on
    geo = ("sdf", "variance", "color", "shading", "heads", "background")
    everything = geo + ("assignment",)
    seg = GEOMETRY_LOSSES + ("grid_tv",) + SEGMENTATION_LOSSES
    small = {"assignment": assignment_lr_scale}
    return [
        PhaseConfig("A", ends[0], GEOMETRY_LOSSES, geo),
        PhaseConfig("B", ends[1], GEOMETRY_LOSSES + ("grid_tv",), geo),
        PhaseConfig("C", ends[2], seg, everything, dict(small)),
        PhaseConfig("D", ends[3], seg + (("em",) if em_every > 0 else ()), everything, dict(small), em_every),
        PhaseConfig("E", 1.0, (), ()),
    ]


def phases_from_config(schedule_cfg) -> list[PhaseConfig] | None:
    """``cfg.schedule`` -> phases (None when ``phases == "none"``)."""
    if schedule_cfg.phases == "none":
        return None
    return default_phases(tuple(schedule_cfg.phase_ends), schedule_cfg.em_every, schedule_cfg.assignment_lr_scale)


class PhaseSchedule:
    """``update(progress, step)`` -> the current PhaseConfig; ``apply(param_groups, progress, step, lr_factor)``
    sets the lrs. A phase covers the training progress p < until_fraction (the last phase also covers the
    rest); EM blocks count steps from the step the phase was entered.
    """

    def __init__(self, phases: list[PhaseConfig]):
        if not phases:
            raise ValueError("PhaseSchedule needs at least one phase")
        for p in phases:
            unknown = set(p.trainable) - set(GROUPS)
            if unknown:
                raise ValueError(f"phase {p.name}: unknown parameter groups {sorted(unknown)}; known: {GROUPS}")
        self.phases = list(phases)
        self.current, self.current_index, self.entered_step = self.phases[0], 0, 0

    def index(self, progress: float) -> int:
        for i, p in enumerate(self.phases):
            if progress < p.until_fraction:
                return i
        return len(self.phases) - 1

    def update(self, progress: float, step: int = 0) -> PhaseConfig:
        i = self.index(progress)
        if i != self.current_index:
            self.current_index, self.entered_step = i, step
        self.current = self.phases[i]
        return self.current

    def trainable(self, step: int) -> tuple[str, ...]:
        """Groups that train at ``step`` in the current phase (EM phases alternate heads+geometry /
        assignment blocks of ``em_every`` steps)."""
        p = self.current
        if p.em_every <= 0 or "assignment" not in p.trainable:
            return p.trainable
        block = (step - self.entered_step) // p.em_every
        if block % 2 == 1:
            return ("assignment",)
        return tuple(g for g in p.trainable if g != "assignment")

    def lr_scale(self, group: str, step: int) -> float:
        if group not in self.trainable(step):
            return 0.0
        return float(self.current.lr_scale.get(group, 1.0))

    def apply(self, param_groups, progress: float, step: int, lr_factor: float = 1.0) -> PhaseConfig:
        """Set ``lr = base_lr * lr_factor * scale`` on every named group (base_lr recorded on first
        sight as the group's lr then); pass the lr schedule's factor so both compose. Idempotent."""
        phase = self.update(progress, step)
        for g in param_groups:
            name = g.get("name")
            if name is None:
                continue
            base = g.setdefault("base_lr", g["lr"])
            g["lr"] = base * lr_factor * self.lr_scale(name, step)
        return phase
