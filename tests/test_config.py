import pytest
import yaml

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


# ----------------------------------------------------------------------------- voxel settings by concept


def test_old_flat_voxel_configs_move_into_their_sections(tmp_path):
    old = to_dict(preset_config("svraster-sdf"))
    flat = {k: v for section in old["voxels"].values() for k, v in section.items()}
    flat["mask_weight"] = flat.pop("mask_l2_weight")  # the four names from before the sections
    flat["normal_weight"], flat["normal_from"] = flat.pop("depth_normal_weight"), flat.pop("depth_normal_from")
    flat["train_downscale"] = flat.pop("downscale")
    flat.update(lr_geo=0.007, max_voxels=1234, mask_weight=0.3, normal_weight=0.01, train_downscale=2)
    old["voxels"] = flat
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    cfg = load_config(path)
    assert cfg.voxels.train.lr_geo == 0.007 and cfg.voxels.structure.max_voxels == 1234
    assert cfg.voxels.loss.mask_l2_weight == 0.3 and cfg.voxels.loss.depth_normal_weight == 0.01
    assert cfg.voxels.model.mode == "sdf" and cfg.voxels.train.downscale == 2  # the preset's own values came along


def test_an_old_flat_voxel_override_names_its_new_key():
    with pytest.raises(ConfigError, match=r"voxels\.train\.lr_geo"):
        apply_overrides(preset_config("svraster"), ["voxels.lr_geo=0.01"])
    with pytest.raises(ConfigError, match=r"voxels\.loss\.mask_l2_weight"):
        apply_overrides(preset_config("svraster"), ["voxels.mask_weight=0.2"])


def test_a_run_is_told_which_settings_its_model_ignores():
    from lumisurf.jobs.train import ignored_note

    assert ignored_note(preset_config("lumisurf")) is None and ignored_note(preset_config("svraster")) is None
    voxels = apply_overrides(
        preset_config("svraster"), ["loss.eikonal_weight=0.5", "sampler.n_samples=8", "voxels.loss.tv_weight=0.1"]
    )
    note = ignored_note(voxels)
    assert note.count("\n") == 0 and "loss.eikonal_weight" in note and "sampler.n_samples" in note
    assert "voxels.loss" not in note  # what the model reads is not reported
    field = apply_overrides(preset_config("lumisurf"), ["voxels.model.mode=sdf", "optim.lr=0.001"])
    assert "voxels.model.mode" in ignored_note(field) and "optim.lr" not in ignored_note(field)
    seg = apply_overrides(preset_config("svraster-sdf"), ["loss.segmentation.entropy_weight=0.1"])
    assert ignored_note(seg) is None  # the deferred mixture reads the shared segmentation terms
