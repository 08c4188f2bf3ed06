import pytest

from lumisurf.config import Config, apply_overrides, from_dict, load_config, save_config, to_dict
from lumisurf.errors import ConfigError
from lumisurf.presets import PRESETS, preset_config
from lumisurf.registry import Registry


def test_round_trip(tmp_path):
    cfg = preset_config("neus")
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_overrides_typed():
    cfg = apply_overrides(
        Config(), ["train.max_steps=12", "loss.rgb=huber", "model.sdf.skip_in=[2]", "optim.lr=1", "data.path=/x"]
    )
    assert cfg.train.max_steps == 12 and cfg.loss.rgb == "huber" and cfg.model.sdf.skip_in == (2,)
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == 1.0 and cfg.data.path == "/x"


@pytest.mark.parametrize(
    "bad", ["train.nope=1", "nope.x=1", "loss.rgb=l3", "train.max_steps=abc", "train.max_steps", "sampler.perturb=3"]
)
def test_bad_overrides_rejected(bad):
    with pytest.raises(ConfigError):
        apply_overrides(Config(), [bad])


def test_unknown_key_in_file_rejected():
    data = to_dict(Config())
    data["model"]["sdf"]["widht"] = 3
    with pytest.raises(ConfigError, match="widht"):
        from_dict(Config, data)


def test_presets_build():
    for name in PRESETS:
        assert preset_config(name).preset == name
    with pytest.raises(ConfigError):
        preset_config("nope")


def test_registry_duplicates():
    reg = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(KeyError):
        reg.register("a")(2)
    with pytest.raises(KeyError, match="choose one of"):
        reg.get("b")
