"""YAML configs and dotted overrides."""

from __future__ import annotations

import pytest

from s4dss.config import ConfigError, diff, load_config, parse_overrides, save_config


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    # "1e-3" is a string to YAML 1.1 (no dot); it must still become a float
    path.write_text("task: {name: digits}\ntrain: {lr: 1e-3, epochs: 2}\nmodel: {d_state: 8}\n")
    cfg = load_config(path, ["train.epochs=5", "model.d_state=[4, 2]", "run.dir=runs/x"])
    assert cfg["train"]["lr"] == 0.001 and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["epochs"] == 5 and cfg["model"]["d_state"] == [4, 2]
    assert cfg["train"]["batch_size"] == 32  # defaults filled in
    save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(tmp_path / "run" / "config.yaml")
    assert again == cfg and not diff(cfg, again)
    keys = [d.split(":")[0] for d in diff(cfg, load_config(path, ["train.epochs=6"]))]
    assert keys == ["model.d_state", "train.epochs", "run.dir"]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)
    bad.write_text("tasks: {name: digits}\n")
    with pytest.raises(ConfigError, match="unknown sections"):
        load_config(bad)
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["lr=1"])
    with pytest.raises(ConfigError, match="unknown section"):
        parse_overrides(["trian.lr=1"])
    with pytest.raises(ConfigError, match="unknown key train.eopchs"):
        load_config(None, ["task.name=digits", "train.eopchs=3"])
    with pytest.raises(ConfigError, match="task.name"):
        load_config(None, [])
