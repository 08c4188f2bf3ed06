"""Helpers of ``benchmarks/scenes/make_scene.py``: procedural meshes, seeded scene recipes, cameras,
Mitsuba 3 rendering (``scalar_rgb``), file encodings and independent checks of a written scene.

Only ``render`` imports mitsuba; everything else needs numpy/trimesh/Pillow only.
"""
