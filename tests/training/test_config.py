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
    with pytest.raises(ConfigError, match=r"model.attention: 'fast' is not one of"):
        config_from_dict({**BASE, "model": {"attention": "fast"}})
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
