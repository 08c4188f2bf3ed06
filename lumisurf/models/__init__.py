"""Models: fields + shading + samplers assembled into a ray -> colour function."""
