"""Checkpoint digests: every single-byte change is refused; version-1 files load with a warning."""

from __future__ import annotations

import io
import warnings
import zipfile

import pytest
import torch

from s4dss.checkpoint import (
    CheckpointError,
    CheckpointWarning,
    load_checkpoint,
    save_checkpoint,
)
from s4dss.data.synthetic import load as majority
from s4dss.model import S4Model
from s4dss.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real training checkpoint: model weights, AdamW moments, scheduler, RNG, metadata."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    task = majority(n_train=32, n_val=8, n_test=8, length=8)
    io_kw = {"vocab_size": task.vocab_size} if task.vocab_size else {"d_input": task.d_input}
    model = S4Model(d_output=task.n_classes, **io_kw, d_model=4, n_layers=1, d_state=4)
    cfg = {"epochs": 1, "batch_size": 8, "progress": False, "num_threads": 1}
    train(model, task, cfg, run)
    return run / "last.pt"


def regions(raw: bytes, ck: dict) -> dict[str, int]:
    """Named byte positions: zip structure, metadata, a weight, both AdamW moments, the digest."""
    where = {"first byte": 0, "last byte": len(raw) - 1, "digest tag": len(raw) - 77}
    where["digest hex"] = len(raw) - 30
    where["comment length field"] = len(raw) - 78
    zf = zipfile.ZipFile(io.BytesIO(raw))
    where["end of central directory"] = len(raw) - 77 - 22 + 4
    where["central directory"] = zf.start_dir + 10
    for info in zf.infolist():
        short = info.filename.split("/", 1)[1]
        where[f"{short} local header"] = info.header_offset + 14  # its CRC field
    # values found by their bytes: torch stores tensors and the pickle uncompressed
    where["metadata: format marker"] = raw.index(b"s4dss-checkpoint")
    where["metadata: run config"] = raw.index(b"batch_size")
    tensors = {
        "tensor storage: layers.0.D": ck["model_state"]["layers.0.D"],
        "tensor storage: decoder.weight": ck["model_state"]["decoder.weight"],
        "optimizer moment exp_avg": ck["optimizer"]["state"][0]["exp_avg"],
        "optimizer moment exp_avg_sq": ck["optimizer"]["state"][0]["exp_avg_sq"],
        "rng state": ck["rng"]["torch"],
    }
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        start = raw.index(data)
        where[f"{name} (first)"] = start
        where[f"{name} (last)"] = start + len(data) - 1
    return where


def test_every_single_byte_flip_is_refused(trained, tmp_path):
    raw = trained.read_bytes()
    ck = load_checkpoint(trained)  # the intact file loads, without a warning
    named = regions(raw, ck)
    spread = {f"offset {p}": p for p in range(0, len(raw), max(1, len(raw) // 150))}
    bad = tmp_path / "flipped.pt"
    loaded = []
    for label, pos in {**named, **spread}.items():
        flipped = bytearray(raw)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", CheckpointWarning)
                load_checkpoint(bad)
            loaded.append(label)
        except CheckpointError as e:
            assert str(bad) in str(e)
    assert len(named) >= 20 and len(spread) >= 150
    assert not loaded, f"loaded despite a flipped byte: {loaded}"


def test_damage_message_names_the_file_and_what_to_do(trained, tmp_path):
    raw = bytearray(trained.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad = tmp_path / "last.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"last\.pt is damaged: .*SHA-256.*best\.pt.*retrain"):
        load_checkpoint(bad)


def test_a_missing_digest_on_a_version_2_file_is_refused(trained, tmp_path):
    raw = trained.read_bytes()
    bad = tmp_path / "x.pt"
    bad.write_bytes(raw[:-77] + b"s4dss-sha257:" + raw[-64:])  # tag damaged: no digest found
    with pytest.raises(CheckpointError, match="version-2 checkpoint must end with its SHA-256"):
        load_checkpoint(bad)


def test_sealed_file_is_still_a_plain_torch_zip(trained):
    data = torch.load(trained, weights_only=True)
    assert data["version"] == 2 and data["format"] == "s4dss-checkpoint"
    zf = zipfile.ZipFile(trained)
    assert zf.testzip() is None and zf.comment.startswith(b"s4dss-sha256:")


def test_version_1_checkpoint_loads_with_a_warning_and_can_be_resealed(trained, tmp_path):
    """Files written before the digest existed: plain torch.save of the version-1 dict."""
    data = load_checkpoint(trained)
    old = tmp_path / "v1.pt"
    torch.save({**data, "version": 1}, old)
    with pytest.warns(CheckpointWarning, match=r"v1\.pt is a version-1 checkpoint without a dig"):
        legacy = load_checkpoint(old, kind="train")
    assert torch.equal(legacy["model_state"]["layers.0.D"], data["model_state"]["layers.0.D"])
    save_checkpoint(old, legacy, kind="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_checkpoint(old)["version"] == 2
    # a damaged version-1 file is still refused when torch cannot read it
    old.write_bytes(old.read_bytes()[:-200])
    with pytest.raises(CheckpointError):
        load_checkpoint(old)


def test_cli_refuses_a_flipped_checkpoint(trained, tmp_path, capsys):
    from s4dss.cli import main

    raw = bytearray(trained.read_bytes())
    raw[raw.index(b"s4dss-checkpoint")] ^= 0x20
    bad = tmp_path / "best.pt"
    bad.write_bytes(bytes(raw))
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt is damaged" in err[0]
    assert main(["reduce", str(bad), "--rank", "2", "--out", str(tmp_path / "r.pt")]) == 2
    assert "is damaged" in capsys.readouterr().err
