"""Data: cameras (one convention), format readers, normalisation, the built-in scene, pixel samplers."""
