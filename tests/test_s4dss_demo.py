"""The demo runs end to end on a tiny budget and reports what it promises."""

from s4dss.demo import run


def test_demo_runs_and_reports(tmp_path, capsys):
    assert run(seed=1, out_dir=tmp_path, ranks=(4,), retrain_ranks=(4,), steps=5,
               retrain_steps=2) == 0  # fmt: skip
    out = capsys.readouterr().out
    for needle in ("layers.0: HSVs", "layers.1: HSVs", "bound max", "kernel error", "cond(V)",
                   "parameters", "test acc", "step mode", "from scratch"):  # fmt: skip
        assert needle in out, needle
    assert (tmp_path / "hsv.png").stat().st_size > 1000
