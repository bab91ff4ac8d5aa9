"""``python -m s4dss reduce`` with --budget, --param-budget, --method spa and --poles shared."""

from __future__ import annotations

import json

import pytest

from s4dss.checkpoint import load_checkpoint
from s4dss.cli import main


@pytest.fixture(scope="module")
def trained(tiny_run):
    return tiny_run / "last.pt"


def _reduce(trained, tmp_path, *args):
    out = tmp_path / "r.pt"
    code = main(["reduce", str(trained), *args, "--out", str(out)])
    report = json.loads((tmp_path / "r.pt.json").read_text()) if code == 0 else None
    return code, out, report


def test_state_budget(trained, tmp_path, capsys):
    code, out, report = _reduce(trained, tmp_path, "--budget", "7")
    assert code == 0
    orders = [layer["order"] for layer in report["layers"]]
    assert sum(orders) == 7 and report["budget"] == 7
    assert all(layer["score"] is not None for layer in report["layers"])
    assert load_checkpoint(out, kind="reduced")["model_config"]["d_state"] == orders
    assert "allocation (state budget 7" in capsys.readouterr().out


def test_parameter_budget_with_shared_poles_and_spa(trained, tmp_path, capsys):
    code, out, report = _reduce(
        trained, tmp_path, "--param-budget", "400", "--poles", "shared", "--method", "spa"
    )
    assert code == 0
    assert report["params_after"] <= 400 < report["params_before"]
    assert report["poles"] == "shared" and report["method"] == "spa"
    config = load_checkpoint(out, kind="reduced")["model_config"]
    assert config["lambda_per_channel"] is False
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0  # the checkpoint rebuilds and runs


def test_parameter_increase_is_reported(trained, tmp_path, capsys):
    code, _, report = _reduce(trained, tmp_path, "--rank", "6")
    assert code == 0 and report["params_after"] > report["params_before"]
    assert "warning: the reduced model has MORE parameters" in capsys.readouterr().err


def test_refusals(trained, tmp_path, capsys):
    assert _reduce(trained, tmp_path, "--rank", "2", "--budget", "4")[0] == 2
    assert "exactly one of --rank, --tol, --budget and --param-budget" in capsys.readouterr().err
    assert _reduce(trained, tmp_path, "--budget", "1")[0] == 2
    assert "minimum 2" in capsys.readouterr().err
    assert _reduce(trained, tmp_path, "--param-budget", "10")[0] == 2
    assert "below the minimum" in capsys.readouterr().err
