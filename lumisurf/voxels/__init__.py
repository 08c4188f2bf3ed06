"""Sparse voxels (SVRaster-style): octree leaves with shared corner values, rasterized front to back."""
