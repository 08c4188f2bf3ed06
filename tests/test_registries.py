"""Every registry matches the config choices that name its entries, and refuses duplicates."""

from __future__ import annotations

import typing

import pytest

from lumisurf import config
from lumisurf.data.pixel_sampling.adaptive import PIXEL_SAMPLERS
from lumisurf.data.readers import MARKERS, READERS
from lumisurf.fields.base import SDF_BACKENDS
from lumisurf.kinds import MODEL_KINDS
from lumisurf.losses.photometric import PHOTOMETRIC
from lumisurf.registry import Registry
from lumisurf.shading.heads import HEADS

CASES = [
    (config.DatasetFormat, READERS),
    (config.SDFBackend, SDF_BACKENDS),
    (config.HeadName, HEADS),
    (config.PixelSamplerName, PIXEL_SAMPLERS),
    (config.RgbLoss, PHOTOMETRIC),
    (config.ModelKindName, MODEL_KINDS),
]


@pytest.mark.parametrize("choices, registry", CASES, ids=[r.kind for _, r in CASES])
def test_registry_matches_config_choices(choices, registry):
    assert sorted(typing.get_args(choices)) == registry.names()


def test_config_fields_use_the_registry_choices():
    hints = typing.get_type_hints(config.DataConfig)
    assert set(typing.get_args(hints["format"])) == {"auto", *READERS.names()}
    assert typing.get_type_hints(config.SDFConfig)["backend"] is config.SDFBackend
    assign = typing.get_type_hints(config.AssignmentConfig)
    assert typing.get_args(assign["heads"])[0] is config.HeadName


def test_every_reader_has_markers():
    assert sorted(MARKERS) == READERS.names()
    priorities = [p for p, _ in MARKERS.values()]
    assert len(set(priorities)) == len(priorities)  # detection order is total


def test_head_facts():
    assert [n for n in HEADS if HEADS[n].gives_materials] == ["specular"]
    assert {n for n in HEADS if HEADS[n].view_dependent} == {"specular", "transmission"}
    ranks = sorted(HEADS, key=lambda n: HEADS[n].view_rank)
    assert ranks == ["specular", "transmission", "subsurface", "lambert"]


def test_registry_refuses_duplicates_and_lists_choices():
    reg = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a")(2)
    with pytest.raises(KeyError, match=r"choose one of \['a'\]"):
        reg.get("b")
    assert list(reg) == ["a"] and len(reg) == 1 and reg["a"] == 1
