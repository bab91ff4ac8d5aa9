"""Every config value and numeric CLI option is checked when read: one line, exit code 2."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import yaml

from s4dss import config
from s4dss.cli import main
from s4dss.config import ConfigError, load_config
from s4dss.model import S4Model
from s4dss.train import TrainConfig, train

# (override, part of the message): the value shown as parsed, then what is allowed
BAD_VALUES = [
    ("train.lr=abc", "train.lr = 'abc': expected a finite number > 0"),
    ("train.lr=-1", "train.lr = -1: expected a finite number > 0"),
    ("train.lr=nan", "train.lr = nan: expected a finite number > 0"),
    ("train.lr=inf", "train.lr = inf: expected a finite number > 0"),
    ("train.seed=x", "train.seed = 'x': expected an integer >= 0 and <= 4294967295"),
    ("train.seed=-1", "train.seed = -1: expected an integer >= 0"),
    ("train.seed=1.5", "train.seed = 1.5: expected an integer"),
    ("train.grad_clip=no", "train.grad_clip = False: expected a finite number > 0, or null"),
    ("train.grad_clip='no'", "train.grad_clip = 'no': expected a finite number > 0, or null"),
    ("train.grad_clip=0", "train.grad_clip = 0: expected a finite number > 0, or null"),
    ("train.epochs=two", "train.epochs = 'two': expected an integer >= 1"),
    ("train.epochs=1.5", "train.epochs = 1.5: expected an integer >= 1"),
    ("train.epochs=0", "train.epochs = 0: expected an integer >= 1"),
    ("train.epochs=true", "train.epochs = True: expected an integer >= 1"),
    ("train.batch_size=0", "train.batch_size = 0: expected an integer >= 1"),
    ("train.batch_size=abc", "train.batch_size = 'abc': expected an integer >= 1"),
    ("train.eval_batch_size=0", "train.eval_batch_size = 0: expected an integer >= 1"),
    ("train.weight_decay=-0.1", "train.weight_decay = -0.1: expected a finite number >= 0"),
    ("train.schedule=linear", "train.schedule = 'linear': expected one of 'cosine', 'plateau'"),
    ("train.warmup_steps=-1", "train.warmup_steps = -1: expected an integer >= 0"),
    ("train.warmup_steps=1.5", "train.warmup_steps = 1.5: expected an integer >= 0"),
    ("train.plateau_factor=0", "train.plateau_factor = 0: expected a finite number > 0 and < 1"),
    ("train.plateau_factor=1.5", "train.plateau_factor = 1.5: expected a finite number > 0 and"),
    ("train.plateau_patience=-1", "train.plateau_patience = -1: expected an integer >= 0"),
    ("train.max_steps=0", "train.max_steps = 0: expected an integer >= 1, or null"),
    ("train.max_steps=abc", "train.max_steps = 'abc': expected an integer >= 1, or null"),
    ("train.progress=maybe", "train.progress = 'maybe': expected true or false"),
    ("train.log_every=0", "train.log_every = 0: expected an integer >= 1"),
    ("train.num_threads=-1", "train.num_threads = -1: expected an integer >= 1, or null"),
    ("train.num_threads=0", "train.num_threads = 0: expected an integer >= 1, or null"),
    ("train.interrupt_after_steps=-1", "train.interrupt_after_steps = -1: expected an integer"),
    ("model.d_model=0", "model.d_model = 0: expected an integer >= 1"),
    ("model.d_model=abc", "model.d_model = 'abc': expected an integer >= 1"),
    ("model.n_layers=1.5", "model.n_layers = 1.5: expected an integer >= 1"),
    ("model.d_state=0", "model.d_state = 0: expected an integer >= 1, or a non-empty list"),
    ("model.d_state=[4,x]", r"model.d_state = [4, 'x']: expected an integer >= 1, or a non-em"),
    ("model.d_state=[]", "model.d_state = []: expected an integer >= 1, or a non-empty list"),
    ("model.mode=foo", "model.mode = 'foo': expected one of 'exp', 'softmax'"),
    ("model.init=foo", "model.init = 'foo': expected one of 'skew-hippo'"),
    ("model.dropout=1.5", "model.dropout = 1.5: expected a finite number >= 0 and < 1"),
    ("model.pool=max", "model.pool = 'max': expected one of 'mean', 'last', 'none'"),
    ("model.dt_min=-1", "model.dt_min = -1: expected a finite number > 0"),
    ("model.ssm_lr=-1", "model.ssm_lr = -1: expected a finite number >= 0"),
    ("model.kernel_dtype=float16", "model.kernel_dtype = 'float16': expected one of 'float64'"),
    ("model.prenorm=maybe", "model.prenorm = 'maybe': expected true or false"),
    ("model.lambda_per_channel=3", "model.lambda_per_channel = 3: expected true or false"),
    ("model.name=transformer", "model.name = 'transformer': expected one of 's4'"),
    ("model.d_sate=3", "unknown key model.d_sate; known: ['d_hidden', 'd_model', 'd_state'"),
    ("model.d_output=5", "model.d_output is set from the task; remove it"),
    ("task.name=listopz", "task.name = 'listopz': expected one of 'aan', 'acsf1', 'cifar'"),
    ("task.name=123", "task.name = 123: expected one of 'aan'"),
    ("task.data_dir=[1]", "task.data_dir = [1]: expected a path, or null"),
    ("run.init_from=[1]", "run.init_from = [1]: expected a path, or null"),
    ("run.dir=false", "run.dir = False: expected a path, or null"),
]
# what the whole config shows, not a single value
BAD_COMBINATIONS = [
    (["model.dt_min=0.5"], "model.dt_min = 0.5 > model.dt_max = 0.1: expected dt_min <= dt_max"),
    (["model.d_state=[4,4]", "model.n_layers=3"], r"model.d_state = [4, 4] has 2 entries for"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES)
def test_bad_value_is_a_config_error_naming_key_value_and_rule(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["task.name=majority", override])
    text = str(e.value)
    assert text.startswith("command line: ") and message in text and "\n" not in text


@pytest.mark.parametrize(("overrides", "message"), BAD_COMBINATIONS)
def test_bad_combination_is_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(None, ["task.name=majority", *overrides])


def test_errors_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: {name: digits}\ntrain: {grad_clip: 'no', epochs: 2}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.grad_clip = 'no': expected a finite"):
        load_config(path)
    path.write_text("task: {name: digits}\ntrain: {lr: .nan}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.lr = nan: expected a finite number"):
        load_config(path)


def test_values_are_normalised(tmp_path):
    cfg = load_config(
        None, ["task.name=digits", "train.epochs=2.0", "train.lr=1", "train.max_steps=1e4"]
    )
    assert cfg["train"]["epochs"] == 2 and isinstance(cfg["train"]["epochs"], int)
    assert cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["max_steps"] == 10000 and isinstance(cfg["train"]["max_steps"], int)
    assert (
        load_config(None, ["task.name=digits", "train.grad_clip=null"])["train"]["grad_clip"]
        is None
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 1.5, "train.epochs = 1.5: expected an integer >= 1"),
        ("lr", "abc", "train.lr = 'abc': expected a finite number > 0"),
        ("num_threads", -1, "train.num_threads = -1: expected an integer >= 1, or null"),
        ("grad_clip", "no", "train.grad_clip = 'no': expected a finite number > 0, or null"),
    ],
)
def test_python_api_checks_the_same_rules(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})
    # train() given a dict: refused before anything is built or written
    with pytest.raises(ConfigError, match=message):
        train(None, None, {field: value}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_every_key_has_a_rule():
    """Adding a TrainConfig field or an S4Model argument? Add its line to s4dss.config.TRAIN /
    MODEL (a field without one is only type-checked from its annotation)."""
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in config.TRAIN]
    assert not missing, f"add rules for train.{missing} to s4dss.config.TRAIN"
    assert set(config.TRAIN) == {f.name for f in dataclasses.fields(TrainConfig)}
    args = set(inspect.signature(S4Model.__init__).parameters) - {"self", *config.FROM_TASK}
    missing = sorted(args - set(config.MODEL))
    assert not missing, f"add rules for model.{missing} to s4dss.config.MODEL"
    # the defaults satisfy their own rules
    for key, value in dataclasses.asdict(TrainConfig()).items():
        assert config.TRAIN[key].check(key, value) == value


def test_field_without_a_rule_is_type_checked_from_its_annotation(monkeypatch):
    monkeypatch.delitem(config.TRAIN, "log_every")  # as if a new field had no line yet
    assert config.check_value("train", "log_every", 0) == 0  # no range known
    with pytest.raises(ConfigError, match="train.log_every = 'x': expected an integer"):
        config.check_value("train", "log_every", "x")
    monkeypatch.delitem(config.TRAIN, "grad_clip")
    assert config.check_value("train", "grad_clip", None) is None
    with pytest.raises(ConfigError, match="train.grad_clip = 'no': expected a finite number"):
        config.check_value("train", "grad_clip", "no")


# ------------------------------------------------------------------------------- CLI

CONFIG = {
    "task": {"name": "majority", "n_train": 32, "n_val": 8, "n_test": 8, "length": 8},
    "model": {"name": "s4", "d_model": 4, "n_layers": 1, "d_state": 4},
    "train": {"epochs": 1, "batch_size": 8, "progress": False, "num_threads": 1},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    (d / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    assert main(["train", "--config", str(d / "cfg.yaml"), "--run-dir", str(d / "run")]) == 0
    return d


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=abc", "train.lr = 'abc': expected a finite number > 0"),
        ("train.lr=-1", "train.lr = -1: expected"),
        ("train.lr=nan", "train.lr = nan: expected"),
        ("train.seed=x", "train.seed = 'x': expected an integer"),
        ("train.grad_clip='no'", "train.grad_clip = 'no': expected a finite number > 0, or null"),
        ("train.epochs=two", "train.epochs = 'two': expected an integer >= 1"),
        ("train.epochs=1.5", "train.epochs = 1.5: expected an integer >= 1"),
        ("train.num_threads=-1", "train.num_threads = -1: expected an integer >= 1, or null"),
        ("task.name=listopz", "task.name = 'listopz': expected one of 'aan'"),
        ("model.d_state=[4,x]", "model.d_state = [4, 'x']: expected an integer >= 1"),
    ],
)
def test_cli_train_refuses_bad_values(run, tmp_path, capsys, override, message):
    out = tmp_path / "r"
    assert main(["train", "--config", str(run / "cfg.yaml"), "--run-dir", str(out), override]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "{ck}", "--batch-size", "0"], "--batch-size = 0: expected an integer >= 1"),
        (["evaluate", "{ck}", "--batch-size", "-3"], "--batch-size = -3: expected an integer"),
        (["evaluate", "{ck}", "--batch-size", "x"], "--batch-size = 'x': expected an integer"),
        (["reduce", "{ck}", "--rank", "2", "--L", "0"], "--L = 0: expected an integer >= 1"),
        (["reduce", "{ck}", "--rank", "2", "--L", "-5"], "--L = -5: expected an integer >= 1"),
        (["reduce", "{ck}", "--rank", "0"], "--rank = 0: expected an integer >= 1"),
        (["reduce", "{ck}", "--rank", "1.5"], "--rank = 1.5: expected an integer >= 1"),
        (["reduce", "{ck}", "--tol", "0"], "--tol = 0: expected a finite number > 0"),
        (["reduce", "{ck}", "--tol", "nan"], "--tol = nan: expected a finite number > 0"),
        (["reduce", "{ck}", "--tol=-1e-3"], "--tol = -0.001: expected a finite number > 0"),
        (["reduce", "{ck}", "--rank", "2", "--rank-tol", "1.5"], "--rank-tol = 1.5: expected a"),
        (["reduce", "{ck}", "--rank", "2", "--rank-tol", "-1"], "--rank-tol = -1: expected a"),
        (["reduce", "{ck}", "--rank", "2", "--rank-tol", "nan"], "--rank-tol = nan: expected"),
    ],
)
def test_cli_refuses_bad_numeric_options(run, tmp_path, capsys, args, message):
    ck = str(run / "run" / "last.pt")
    argv = [a.replace("{ck}", ck) for a in args]
    if argv[0] == "reduce":
        argv += ["--out", str(tmp_path / "o.pt")]
    assert main(argv) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "o.pt").exists()


def test_reduce_and_evaluate_create_missing_output_folders(run, tmp_path, capsys):
    ck = str(run / "run" / "last.pt")
    out = tmp_path / "new" / "deeper" / "r2.pt"
    report = tmp_path / "elsewhere" / "report.json"
    assert main(["reduce", ck, "--rank", "2", "--out", str(out), "--report", str(report)]) == 0
    assert out.is_file() and json.loads(report.read_text())["rank"] == 2
    out2 = tmp_path / "other" / "r1.pt"  # default report next to the checkpoint
    assert main(["reduce", ck, "--rank", "1", "--L", "16", "--out", str(out2)]) == 0
    assert json.loads(Path(str(out2) + ".json").read_text())["L"] == 16  # --L is used
    res = tmp_path / "eval" / "x" / "e.json"
    assert main(["evaluate", ck, "--out", str(res)]) == 0
    assert json.loads(res.read_text())["n"] == 8
    capsys.readouterr()


def test_reduce_out_that_cannot_be_a_file_is_a_clear_error(run, tmp_path, capsys):
    ck = str(run / "run" / "last.pt")
    assert main(["reduce", ck, "--rank", "2", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder; give a file name" in one_line_error(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["reduce", ck, "--rank", "2", "--out", str(blocker / "r.pt")]) == 2
    assert f"--out {blocker / 'r.pt'}: cannot create {blocker}" in one_line_error(capsys)
    assert main(["evaluate", ck, "--out", str(blocker / "e.json")]) == 2
    assert "cannot create" in one_line_error(capsys)
