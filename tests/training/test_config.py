"""Experiment configs: strict keys and types, overrides, and every shipped config loads."""
from pathlib import Path

import pytest

from pyg_docre.config import ConfigError, apply_overrides, config_from_dict, load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "pyg_docre" / "configs"
BASE = {"data": {"train": {"file": "a.json"}, "dev": {"file": "b.json"}}}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.name == path.stem


def test_shipped_config_names():
    names = {p.name for p in CONFIG_DIR.glob("*.yaml")}
    assert {"docred_bert.yaml", "redocred_bert.yaml", "revisit_docred_bert.yaml",
            "docred_roberta_large.yaml", "redocred_minilm_cpu.yaml",
            "redocred_minilm_cpu_atlop.yaml", "smoke.yaml"} <= names


def test_cpu_configs_differ_only_by_the_baseline_switch():
    full = load_config(CONFIG_DIR / "redocred_minilm_cpu.yaml").to_dict()
    atlop = load_config(CONFIG_DIR / "redocred_minilm_cpu_atlop.yaml").to_dict()
    assert full["model"].pop("baseline") is False and atlop["model"].pop("baseline") is True
    full.pop("name"), atlop.pop("name")
    assert full == atlop


def test_unknown_key_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'training.lr'"):
        config_from_dict({**BASE, "training": {"lr": 1.0}})
    with pytest.raises(ConfigError, match=r"unknown config key 'modle'"):
        config_from_dict({**BASE, "modle": {}})
    path = tmp_path / "c.yaml"
    path.write_text("data: {train: {file: a}, dev: {file: b, doc: '0:3'}}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown config key 'data.dev.doc'"):
        load_config(path)


def test_types_and_choices_are_checked():
    with pytest.raises(ConfigError, match=r"training.epochs: 'ten' has the wrong type"):
        config_from_dict({**BASE, "training": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"model.gtn.attention: attention must be one of"):
        config_from_dict({**BASE, "model": {"gtn": {"attention": "fast"}}})
    with pytest.raises(ConfigError, match=r"model.gtn.num_layers: num_layers must be >= 1"):
        config_from_dict({**BASE, "model": {"gtn": {"num_layers": 0}}})
    with pytest.raises(ConfigError, match=r"model.gtn.cross_heads: .* must be even"):
        config_from_dict({**BASE, "model": {"gtn": {"cross_heads": 3}}})
    with pytest.raises(ConfigError, match=r"data.train.file: required"):
        config_from_dict({})
    config = config_from_dict({**BASE, "training": {"lr_new": 1}})
    assert isinstance(config.training.lr_new, float)


def test_overrides():
    values = apply_overrides({**BASE}, ["training.epochs=2", "model.baseline=true",
                                        "objectives.distill_layers=[1, 2]",
                                        "data.dev.docs=0:5"])
    config = config_from_dict(values)
    assert config.training.epochs == 2 and config.model.baseline is True
    assert config.objectives.distill_layers == [1, 2] and config.data.dev.docs == "0:5"
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["training.epochs"])
    with pytest.raises(ConfigError, match="unknown config key 'training.epoch'"):
        config_from_dict(apply_overrides({**BASE}, ["training.epoch=3"]))


def test_override_ranges_are_not_read_as_base_60():
    values = apply_overrides({}, ["data.train.docs=10:20", "data.dev.docs=4:",
                                  "training.lr_new=1.0e-4", "data.test.docs=[1, 2]"])
    assert values["data"]["train"]["docs"] == "10:20"
    assert values["data"]["dev"]["docs"] == "4:"
    assert values["data"]["test"]["docs"] == [1, 2]
    assert values["training"]["lr_new"] == pytest.approx(1e-4)


def test_config_file_ranges_are_not_read_as_base_60(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {train: {file: a, docs: 10:20}, dev: {file: b}}\n")
    assert load_config(path).data.train.docs == "10:20"


@pytest.mark.parametrize("key,value,message", [
    ("lr_encoder", -1e-5, "training.lr_encoder: must be a positive"),
    ("lr_new", 0.0, "training.lr_new: must be a positive"),
    ("lr_discriminator", float("nan"), "training.lr_discriminator"),
    ("eval_batch_size", 0, "training.eval_batch_size: must be >= 1"),
    ("max_steps_per_epoch", 0, "training.max_steps_per_epoch: must be >= 1"),
    ("save_every_steps", 0, "training.save_every_steps: must be >= 1"),
    ("warmup_ratio", 1.5, "training.warmup_ratio"),
])
def test_non_positive_training_values_are_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**BASE, "training": {key: value}})


@pytest.mark.parametrize("key,value,message", [
    ("discriminator_every", 0, "objectives.discriminator_every: must be >= 1"),
    ("discriminator_label_smoothing", 0.5, r"objectives.discriminator_label_smoothing: must be"),
    ("discriminator_label_smoothing", -0.1, r"objectives.discriminator_label_smoothing: must be"),
    ("discriminator_gradient_penalty", -1.0, "objectives.discriminator_gradient_penalty: must"),
])
def test_sakd_balance_values_are_checked(key, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**BASE, "objectives": {key: value}})


@pytest.mark.parametrize("value", ["fast", 1.5, -0.1])
def test_encoder_max_padding_is_checked(value):
    with pytest.raises(ConfigError, match="model.encoder_max_padding: must be 'auto', null or"):
        config_from_dict({**BASE, "model": {"encoder_max_padding": value}})
    with pytest.raises(ConfigError, match="model.encoder_max_padding: True has the wrong type"):
        config_from_dict({**BASE, "model": {"encoder_max_padding": True}})


def test_encoder_max_padding_default_keeps_the_runs_made_before_the_key():
    """A config without the key (every run made before it) means padded batches. The shipped
    training configs pad (the padding study did not adopt 'auto'); the smoke config, a
    plumbing check, runs 'auto' so that the end-to-end tests cover it."""
    assert config_from_dict(BASE).model.encoder_max_padding is None
    for path in CONFIG_DIR.glob("*.yaml"):
        expected = "auto" if path.stem == "smoke" else None
        assert load_config(path).model.encoder_max_padding == expected, path.name
    for value in (0, 0.25, 1, None, "auto"):
        config = config_from_dict({**BASE, "model": {"encoder_max_padding": value}})
        assert config.model.encoder_max_padding == value


def test_document_ranges_beyond_the_file_are_errors_not_clamped():
    from pyg_docre.data import parse_doc_range
    with pytest.raises(ValueError, match="99999 is outside 0..6"):
        parse_doc_range("0:99999", 6)
    assert parse_doc_range("0:6", 6) == list(range(6))
    with pytest.raises(ValueError, match="list must hold"):
        parse_doc_range([0, "1"], 6)


@pytest.mark.parametrize("old, new", [("attention", "attention"), ("gtn_layers", "num_layers"),
                                      ("gtn_dropout", "dropout"), ("cross_heads", "cross_heads")])
def test_flat_gtn_keys_name_their_new_key(old, new):
    with pytest.raises(ConfigError, match=rf"model.{old}: moved to model.gtn.{new}"):
        config_from_dict({**BASE, "model": {old: 1}})


def test_gtn_section_maps_one_to_one_onto_the_gtn_arguments():
    import dataclasses
    import inspect

    from pyg_docre.config import GTNConfig
    from pyg_docre.nn import GTN, GTNConv

    accepted = (set(inspect.signature(GTN.__init__).parameters)
                | set(inspect.signature(GTNConv.__init__).parameters))
    assert {f.name for f in dataclasses.fields(GTNConfig)} <= accepted
    gtn = GTN(16, **dataclasses.asdict(GTNConfig(num_layers=1, dropout=0.0)))
    assert gtn.num_layers == 1 and gtn.convs[0].dropout == 0.0
