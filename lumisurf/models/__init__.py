"""Models: fields + shading + samplers assembled into a ray -> color function."""
