"""lumisurf: posed photos -> watertight mesh, materials and relightable renders (CPU first)."""

__version__ = "0.1.0"
