"""Which training pixels become a step's rays: the base class and uniform sampler (``base``), the error
maps the adaptive samplers keep (``error_maps``), the adaptive samplers and the ``PIXEL_SAMPLERS`` registry
(``adaptive``)."""

from lumisurf.data.pixel_sampling.adaptive import PIXEL_SAMPLERS, build_pixel_sampler
from lumisurf.data.pixel_sampling.base import PixelBatch, PixelSampler, UniformPixelSampler

__all__ = ["PIXEL_SAMPLERS", "PixelBatch", "PixelSampler", "UniformPixelSampler", "build_pixel_sampler"]
