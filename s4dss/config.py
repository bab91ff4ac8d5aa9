"""Run configuration: a YAML file, dotted CLI overrides, and the resolved copy in the run dir.

A config has four sections::

    task:  {name: listops-synth, data_dir: ..., <loader/generator options>}
    model: {name: s4, d_model: ..., <S4Model options>}
    train: {epochs: ..., batch_size: ..., lr: ..., ...}   # see s4dss.train.TrainConfig
    run:   {dir: runs/<name>, init_from: <checkpoint to start from, optional>}

Overrides are ``section.key=value`` strings; the value is parsed as YAML, so ``train.lr=1e-3``
gives a float and ``model.d_state=[16,8]`` a list. ``train`` and ``run`` keys must already exist
(a typo is an error, not a silently ignored setting); ``task`` and ``model`` keys are passed to
the task loader / model constructor, which reject unknown ones themselves.
``section.key.subkey=value`` sets one entry of a mapping-valued key (``train.reduce.rank=16``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import yaml

SECTIONS = ("task", "model", "train", "run")
STRICT_SECTIONS = ("train", "run")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file or key."""


def defaults() -> dict:
    """The default config (train defaults come from :class:`s4dss.train.TrainConfig`)."""
    from s4dss.train import TrainConfig

    return {
        "task": {"name": None},
        "model": {"name": "s4"},
        "train": asdict(TrainConfig()),
        "run": {"dir": None, "init_from": None},
    }


def _parse_value(text: str):
    # YAML 1.1 reads "1e-3" as a string; accept the float spellings people type on a CLI
    value = yaml.safe_load(text) if text != "" else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _fix_floats(node):
    """Turn strings like '1e-3' that YAML 1.1 leaves unparsed into floats (recursively)."""
    if isinstance(node, dict):
        return {k: _fix_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_floats(v) for v in node]
    if isinstance(node, str):
        try:
            float(node)
        except ValueError:
            return node
        if any(c in node.lower() for c in "e.") and node.strip().lower() not in ("inf", "nan"):
            return float(node)
    return node


def read_yaml(path: Path) -> dict:
    """Read a config file (sections only; values are checked later)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with sections {SECTIONS}")
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown sections {sorted(unknown)}; allowed: {SECTIONS}")
    for key, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{path}: section {key!r} must be a mapping")
    return _fix_floats(data)


def merge(base: dict, update: dict, *, where: str = "config") -> dict:
    """Deep-merge ``update`` into a copy of ``base``; strict sections reject unknown keys."""
    out = copy.deepcopy(base)
    for section, values in update.items():
        if values is None:
            continue
        if section not in out:
            raise ConfigError(f"{where}: unknown section {section!r}; allowed: {SECTIONS}")
        for key, value in values.items():
            key, _, sub = key.partition(".")  # "reduce.rank": one entry of a mapping-valued key
            if section in STRICT_SECTIONS and key not in out[section]:
                raise ConfigError(
                    f"{where}: unknown key {section}.{key}; known: {sorted(out[section])}"
                )
            if sub:
                old = out[section].get(key)
                if old is not None and not isinstance(old, dict):
                    raise ConfigError(f"{where}: {section}.{key} is not a mapping ({old!r})")
                value = {**(old or {}), sub: value}
            out[section][key] = value
    return out


def parse_overrides(overrides: list[str]) -> dict:
    """``["train.lr=1e-3", "train.reduce.rank=8"]`` -> ``{"train": {"lr": 0.001, "reduce.rank":
    8}}`` (a dotted key sets one entry of a mapping in :func:`merge`)."""
    update: dict = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) not in (2, 3) or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value (or .subkey)")
        if parts[0] not in SECTIONS:
            raise ConfigError(f"override {item!r}: unknown section {parts[0]!r}; {SECTIONS}")
        update.setdefault(parts[0], {})[".".join(parts[1:])] = _parse_value(text)
    return update


def load_config(path: Path | None = None, overrides: list[str] = ()) -> dict:
    """Defaults, then the file, then the overrides; returns the resolved config."""
    cfg = defaults()
    if path is not None:
        cfg = merge(cfg, read_yaml(path), where=str(path))
    cfg = merge(cfg, parse_overrides(list(overrides)), where="command line")
    if not cfg["task"].get("name"):
        raise ConfigError("the config must set task.name (e.g. task.name=digits)")
    return cfg


def save_config(cfg: dict, path: Path) -> None:
    """Write the resolved config as YAML (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tmp.replace(path)


def diff(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    keys = []
    for section in SECTIONS:
        sa, sb = a.get(section) or {}, b.get(section) or {}
        for key in sorted(set(sa) | set(sb)):
            dotted = f"{section}.{key}"
            if dotted not in ignore and sa.get(key) != sb.get(key):
                keys.append(f"{dotted}: {sa.get(key)!r} != {sb.get(key)!r}")
    return keys
