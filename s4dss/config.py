"""Run configuration: a YAML file, dotted CLI overrides, and the resolved copy in the run dir.

A config has four sections::

    task:  {name: listops-synth, data_dir: ..., <loader/generator options>}
    model: {name: s4, d_model: ..., <S4Model options>}
    train: {epochs: ..., batch_size: ..., lr: ..., ...}   # see s4dss.train.TrainConfig
    run:   {dir: runs/<name>, init_from: <checkpoint to start from, optional>}

Overrides are ``section.key=value`` strings; the value is parsed as YAML, so ``train.lr=1e-3``
gives a float and ``model.d_state=[16,8]`` a list. ``train`` and ``run`` keys must already exist
(a typo is an error, not a silently ignored setting); ``model`` keys must be arguments of the
model; ``task`` keys other than ``name`` and ``data_dir`` go to the task loader, which rejects
unknown ones itself.

Validation: every value is checked against a :class:`Rule` (type, range or choices, meaning) as
soon as it is read, from a file or the command line; a bad one is a :class:`ConfigError` naming
the source, the key, the value and what is allowed, e.g. ``command line: train.lr = 'abc':
expected a finite number > 0 (AdamW learning rate of the non-SSM parameters)``. The rules are
the tables :data:`TRAIN`, :data:`RUN`, :data:`MODEL`, :data:`TASK` and :data:`OPTIONS` (CLI
options). To add a train key: add the field to :class:`s4dss.train.TrainConfig` and one line to
:data:`TRAIN`, e.g. ``"reg_weight": number("weight of the HSV regulariser", ge=0)``; a
TrainConfig field without a line is still type-checked from its annotation, and a test lists the
fields that lack one.
``section.key.subkey=value`` sets one entry of a mapping-valued key (``train.reduce.rank=16``).
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from s4dss.data import TASKS
from s4dss.dss import INITS, MODES
from s4dss.model import KERNEL_DTYPES, POOLS
from s4dss.train import SCHEDULES

SECTIONS = ("task", "model", "train", "run")
STRICT_SECTIONS = ("train", "run")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file or key."""


# ------------------------------------------------------------------------------ rules


@dataclass(frozen=True)
class Rule:
    """What one config value may be.

    Attributes
    ----------
    kind : {"int", "number", "flag", "choice", "path", "mapping"}
        ``int``: an integer (a float with an integral value, e.g. ``1e4``, is taken as one);
        ``number``: a finite int or float (stored as float); ``flag``: true/false; ``choice``:
        one of ``choices``; ``path``: a string; ``mapping``: a sub-section (a dict) whose keys
        its own parser checks (``train.hsv_reg``, ``train.reduce``).
    meaning : str
        What the key does, quoted in errors.
    gt, ge, lt, le : float, optional
        Bounds (``>``, ``>=``, ``<``, ``<=``) of an ``int`` or ``number``.
    choices : tuple
        The allowed values of a ``choice``.
    null : bool
        YAML ``null`` (None) is allowed too; ``meaning`` says what it means.
    many : bool
        A non-empty list of such values is allowed too (``model.d_state``: one per layer).
    """

    kind: str
    meaning: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple = ()
    null: bool = False
    many: bool = False

    def allowed(self) -> str:
        """``"an integer >= 1"``, ``"one of 'exp', 'softmax'"``, ..."""
        bounds = [
            f"{op} {v if isinstance(v, int) else format(v, 'g')}"
            for op, v in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
            if v is not None
        ]
        text = {
            "int": "an integer",
            "number": "a finite number",
            "flag": "true or false",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
            "path": "a path",
            "mapping": "a mapping of options",
        }[self.kind] + (" " + " and ".join(bounds) if bounds else "")
        if self.many:
            text += ", or a non-empty list of them"
        return text + (", or null" if self.null else "")

    def _one(self, value):
        """The normalised value, or None if it is not allowed."""
        if self.kind == "flag":
            return value if isinstance(value, bool) else None
        if self.kind == "choice":
            return value if isinstance(value, str | int) and value in self.choices else None
        if self.kind == "path":
            return value if isinstance(value, str) and value else None
        if self.kind == "mapping":
            return value if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value):
            return None
        if self.kind == "int":
            if value != int(value):
                return None
            value = int(value)
        else:
            value = float(value)
        ok = (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )
        return value if ok else None

    def check(self, key: str, value, where: str = ""):
        """``value`` normalised (``2.0`` -> ``2`` for ints, ints -> float for numbers).

        Raises
        ------
        ConfigError
            One line: ``<where>: <key> = <value>: expected <allowed> (<meaning>)``.
        """
        if value is None and self.null:
            return None
        if self.many and isinstance(value, list):
            out = [self._one(v) for v in value]
            if value and None not in out:
                return out
        else:
            out = self._one(value)
            if out is not None:
                return out
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{key} = {shown}: expected {self.allowed()} ({self.meaning})")


def integer(meaning: str, **bounds) -> Rule:
    """An integer; ``bounds``: ``gt``/``ge``/``lt``/``le``, ``null``, ``many``."""
    return Rule("int", meaning, **bounds)


def number(meaning: str, **bounds) -> Rule:
    """A finite number; ``bounds``: ``gt``/``ge``/``lt``/``le``, ``null``."""
    return Rule("number", meaning, **bounds)


def flag(meaning: str) -> Rule:
    return Rule("flag", meaning)


def choice(meaning: str, choices, *, null: bool = False) -> Rule:
    return Rule("choice", meaning, choices=tuple(choices), null=null)


def path(meaning: str, *, null: bool = True) -> Rule:
    return Rule("path", meaning, null=null)


def mapping(meaning: str) -> Rule:
    """A sub-section (dict or null); its keys are checked by the section's own parser."""
    return Rule("mapping", meaning, null=True)


#: ``train`` section: one rule per :class:`s4dss.train.TrainConfig` field.
TRAIN: dict[str, Rule] = {
    "epochs": integer("passes over the training set", ge=1),
    "batch_size": integer("global batch size, split across ranks under DDP", ge=1),
    "eval_batch_size": integer("batch size of validation and test evaluation", ge=1),
    "lr": number("AdamW learning rate of the non-SSM parameters", gt=0),
    "weight_decay": number("AdamW weight decay of the non-SSM parameters", ge=0),
    "schedule": choice("learning-rate schedule", SCHEDULES),
    "warmup_steps": integer("linear learning-rate warm-up steps", ge=0),
    "plateau_factor": number("lr factor of the plateau schedule", gt=0, lt=1),
    "plateau_patience": integer("epochs without improvement before a plateau cut", ge=0),
    "grad_clip": number("maximum global gradient norm; null: no clipping", gt=0, null=True),
    "seed": integer("seed of initialisation, batch order and dropout", ge=0, le=2**32 - 1),
    "max_steps": integer("stop after this many optimizer steps; null: no limit", ge=1, null=True),
    "progress": flag("show a tqdm progress bar"),
    "log_every": integer("write a train record every this many steps", ge=1),
    "num_threads": integer("torch.set_num_threads; null: torch's default", ge=1, null=True),
    "interrupt_after_steps": integer(
        "test hook: stop as if interrupted after this many steps", ge=1, null=True
    ),
    "hsv_reg": mapping(
        "HSV regulariser {weight, kind, order, channels, jitter} (s4dss.regularizers); null: off"
    ),
    "reduce": mapping(
        "in-training reduction {at_epochs | every, rank | fraction | energy | tol, ...} "
        "(s4dss.intrain); null: off"
    ),
}

#: ``run`` section.
RUN: dict[str, Rule] = {
    "dir": path("run directory: config.yaml, last.pt, best.pt, metrics.jsonl"),
    "init_from": path("checkpoint whose architecture and weights the run starts from"),
}

#: ``model`` section: the arguments of :class:`s4dss.S4Model` (and ``PairClassifier``) that a
#: config sets; ``d_output``, ``vocab_size`` and ``d_input`` come from the task.
MODEL: dict[str, Rule] = {
    "name": choice("model family", ("s4",)),
    "d_model": integer("channels H of every layer", ge=1),
    "n_layers": integer("number of DSS layers", ge=1),
    "d_state": integer(
        "complex states N per channel, for all layers or per layer", ge=1, many=True
    ),
    "mode": choice("DSS kernel parameterisation", MODES),
    "init": choice("initialisation of Lambda", tuple(INITS)),
    "lambda_per_channel": flag("one Lambda per channel instead of one shared by all"),
    "prenorm": flag("layer norm before each block if true, after it if false"),
    "dropout": number("dropout probability", ge=0, lt=1),
    "pool": choice("pooling over time before the decoder", POOLS),
    "dt_min": number("smallest initial step size Delta", gt=0),
    "dt_max": number("largest initial step size Delta", gt=0),
    "ssm_lr": number("learning rate of the SSM parameters; 0 freezes them", ge=0),
    "kernel_dtype": choice("precision of the kernel computation", tuple(KERNEL_DTYPES)),
    "d_hidden": integer("hidden width of the pair-task head; null: d_model", ge=1, null=True),
}
FROM_TASK = ("d_output", "vocab_size", "d_input")

#: ``task`` section; the other keys are the loader's options (it rejects unknown ones).
TASK: dict[str, Rule] = {
    "name": choice("the task to train on; known tasks are s4dss.data.TASKS", sorted(TASKS)),
    "data_dir": path("folder the task's files are read from or generated into"),
}

#: CLI options (``python -m s4dss evaluate|reduce``), checked like config values.
OPTIONS: dict[str, Rule] = {
    "--batch-size": integer("evaluation batch size", ge=1),
    "--rank": integer("reduced state dimension r of every layer", ge=1),
    "--budget": integer("total states over all DSS layers after the reduction", ge=1),
    "--param-budget": integer("total parameters of the reduced model", ge=1),
    "--tol": number("per-layer error bound of the reduction", gt=0),
    "--rank-tol": number("relative truncation of the low-rank Gramian factors", ge=0, lt=1),
    "--L": integer("kernel length the reduction is measured over", ge=1),
}


def _annotation_rule(field) -> Rule | None:
    """A type-only rule from a TrainConfig field's annotation (fields without a TRAIN line)."""
    text = str(field.type).replace(" ", "")
    null = text.endswith("|None")
    kind = {"int": "int", "float": "number", "bool": "flag"}.get(text.removesuffix("|None"))
    if kind is None:
        return None
    return Rule(kind, f"TrainConfig.{field.name}", null=null)


def _model_defaults() -> dict:
    """S4Model's arguments and their defaults (``inspect.Parameter.empty`` if required)."""
    from s4dss.model import S4Model

    params = inspect.signature(S4Model.__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self"}


def _model_arguments() -> set[str]:
    return set(_model_defaults()) | {"d_hidden"}  # d_hidden: PairClassifier's head


def rule(section: str, key: str, where: str = "config") -> Rule | None:
    """The rule of ``section.key``; None if the key is free (task loader options, a model
    argument without a line in :data:`MODEL`).

    Raises
    ------
    ConfigError
        ``model`` keys that are neither in :data:`MODEL` nor model arguments, or set from the task.
    """
    table = {"train": TRAIN, "run": RUN, "model": MODEL, "task": TASK}.get(section, {})
    if key in table:
        return table[key]
    if section == "train":
        from s4dss.train import TrainConfig

        typed = {f.name: f for f in fields(TrainConfig)}
        return _annotation_rule(typed[key]) if key in typed else None
    if section == "model":
        if key in FROM_TASK:
            raise ConfigError(f"{where}: model.{key} is set from the task; remove it")
        if key not in _model_arguments():
            raise ConfigError(f"{where}: unknown key model.{key}; known: {sorted(MODEL)}")
    return None


def check_value(section: str, key: str, value, where: str = "config"):
    """``value`` of ``section.key`` normalised by its rule (unchanged if it has none)."""
    r = rule(section, key, where)
    return value if r is None else r.check(f"{section}.{key}", value, where)


def check_train(values: dict, where: str = "") -> dict:
    """All values of a ``train`` section, normalised (used by ``TrainConfig.__post_init__``)."""
    return {k: check_value("train", k, v, where) for k, v in values.items()}


def check_option(option: str, value):
    """A CLI option's value (a string from argparse, or its default) checked by :data:`OPTIONS`."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_value(value)
    return OPTIONS[option].check(option, value)


def check_config(cfg: dict, where: str = "config") -> None:
    """What single values cannot show: ``task.name`` set, ``dt_min <= dt_max``, one
    ``d_state`` per layer."""
    if not cfg["task"].get("name"):
        raise ConfigError("the config must set task.name (e.g. task.name=digits)")
    model, default = cfg["model"], _model_defaults()
    dt_min, dt_max = (model.get(k, default[k]) for k in ("dt_min", "dt_max"))
    if dt_min > dt_max:
        raise ConfigError(
            f"{where}: model.dt_min = {dt_min!r} > model.dt_max = {dt_max!r}: expected "
            "dt_min <= dt_max (range of the initial step sizes)"
        )
    states, layers = model.get("d_state"), model.get("n_layers")
    if isinstance(states, list) and layers is not None and len(states) != layers:
        raise ConfigError(
            f"{where}: model.d_state = {states!r} has {len(states)} entries for model.n_layers = "
            f"{layers}: expected one value, or one per layer"
        )


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
    """Deep-merge ``update`` into a copy of ``base``, checking every value it sets (its rule,
    strict sections' unknown keys); errors start with ``where``."""
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
            out[section][key] = check_value(section, key, value, where)
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
    check_config(cfg)
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
