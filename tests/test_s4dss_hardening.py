"""s4dss on bad input: non-finite layers refused by reduce, CIFAR pickles read without code."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
import subprocess
import warnings

import numpy as np
import pytest
import torch

import sysred
from s4dss import S4Model, reduce
from s4dss.data import MalformedDataError, cifar, get_task


def small_model():
    torch.manual_seed(0)
    return S4Model(d_output=3, d_input=2, d_model=5, n_layers=2, d_state=4).eval()


@pytest.mark.parametrize(
    ("param", "index", "value", "shown"),
    [
        ("D", (3,), float("nan"), r"parameter D \(shape \(5,\)\) has 1 non-finite.*at \[\[3\]\]"),
        ("D", (0,), float("inf"), r"parameter D .*\[inf\] at \[\[0\]\]"),
        ("output_linear.weight", (1, 2), float("nan"), r"parameter output_linear\.weight"),
        ("output_linear.bias", (4,), float("-inf"), r"parameter output_linear\.bias"),
        ("kernel.log_dt", (2,), float("nan"), r"parameter log_dt"),
        ("kernel.Lambda_im", (1,), float("inf"), r"parameter Lambda_im"),
    ],
)
def test_reduce_refuses_any_non_finite_layer_parameter(param, index, value, shown):
    """The skip term and the copied output linear are checked, not only the SSM parameters."""
    model = small_model()
    layer = model.layers[1]
    with torch.no_grad():
        layer.get_parameter(param)[index] = value
    with pytest.raises(sysred.NonFiniteError, match=r"layer 'layers\.1': " + shown):
        reduce(model, rank=2, L=32)


def test_cli_reduce_of_a_checkpoint_with_nan_skip_term(tmp_path, capsys):
    from s4dss.checkpoint import save_checkpoint
    from s4dss.cli import main

    model = small_model()
    with torch.no_grad():
        model.layers[0].D[1] = float("nan")
    ck = tmp_path / "nan.pt"
    payload = {"model_config": model.config, "model_state": model.state_dict(), "config": {}}
    save_checkpoint(ck, {**payload, "reduction": {}}, kind="reduced")
    out = tmp_path / "r.pt"
    assert main(["reduce", str(ck), "--rank", "2", "--L", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "layer 'layers.0': parameter D (shape (5,)) has 1 non-finite" in err[0]
    assert not out.exists()


def test_reduce_of_a_finite_model_is_finite():
    """The check above is not trivially raising: a finite model reduces to a finite one."""
    reduced = reduce(small_model(), rank=2, L=32)
    assert all(torch.isfinite(p).all() for p in reduced.parameters())


# ------------------------------------------------------------------ CIFAR-10 pickle batches


def py2_cpickle(obj) -> bytes:
    """``obj`` as Python 2's ``cPickle.dump(obj, f, 2)`` with numpy 1.x wrote the CIFAR-10 release.

    Python 3 cannot write this stream (it pickles ``bytes`` through ``_codecs.encode`` at protocol
    2), so the opcodes are emitted here: py2 ``str`` (``bytes`` here) as SHORT_BINSTRING /
    BINSTRING, ints as BININT1/2/BININT, lists and dicts filled in batches of 1000, every
    container and string memoised, and an array as ``numpy.core.multiarray._reconstruct`` +
    BUILD with its ``(version, shape, dtype, fortran, raw bytes)`` state, the dtype as
    ``numpy.dtype('u1', False, True)`` + its 8-field state.
    """
    out = bytearray(b"\x80\x02")  # PROTO 2
    count = [0]

    def memoise():
        i = count[0]
        count[0] += 1
        out.extend(b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i))

    def glob(module, name):
        out.extend(b"c" + f"{module}\n{name}\n".encode())
        memoise()

    def save(x):
        if x is None:
            out.extend(b"N")
        elif isinstance(x, bool):
            out.extend(b"\x88" if x else b"\x89")
        elif isinstance(x, int):
            if 0 <= x < 256:
                out.extend(b"K" + bytes([x]))
            elif 0 <= x < 65536:
                out.extend(b"M" + struct.pack("<H", x))
            else:
                out.extend(b"J" + struct.pack("<i", x))
        elif isinstance(x, bytes):
            head = b"U" + bytes([len(x)]) if len(x) < 256 else b"T" + struct.pack("<I", len(x))
            out.extend(head + x)
            memoise()
        elif isinstance(x, tuple):
            if 1 <= len(x) <= 3:
                for v in x:
                    save(v)
                out.extend((b"\x85", b"\x86", b"\x87")[len(x) - 1])
            else:
                out.extend(b"(")
                for v in x:
                    save(v)
                out.extend(b"t")
            memoise()
        elif isinstance(x, list):
            out.extend(b"]")
            memoise()
            for k in range(0, len(x), 1000):
                out.extend(b"(")
                for v in x[k : k + 1000]:
                    save(v)
                out.extend(b"e")
        elif isinstance(x, dict):
            out.extend(b"}")
            memoise()
            out.extend(b"(")
            for k, v in x.items():
                save(k)
                save(v)
            out.extend(b"u")
        elif isinstance(x, np.dtype):
            glob("numpy", "dtype")
            save((x.str[1:].encode(), False, True))
            out.extend(b"R")
            memoise()
            save((3, x.byteorder.encode(), None, None, None, -1, -1, 0))
            out.extend(b"b")
        elif isinstance(x, np.ndarray):
            glob("numpy.core.multiarray", "_reconstruct")
            glob("numpy", "ndarray")
            save((0,))
            save(b"b")
            out.extend(b"\x87")  # TUPLE3: (ndarray, (0,), 'b')
            memoise()
            out.extend(b"R")
            memoise()
            save((1, x.shape, x.dtype, False, x.tobytes()))
            out.extend(b"b")
        else:
            raise TypeError(type(x))

    save(obj)
    return bytes(out + b".")


def cifar_batch(n=5, seed=0, name=b"training batch 1 of 5"):
    rng = np.random.default_rng(seed)
    return {
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"labels": rng.integers(0, 10, size=n).tolist(),
        b"batch_label": name,
        b"filenames": [f"leptodactylus_pentadactylus_s_{i:06d}.png".encode() for i in range(n)],
    }


def pickle_globals(stream: bytes) -> set[str]:
    return {
        arg.replace(" ", ".") for op, arg, _ in pickletools.genops(stream) if op.name == "GLOBAL"
    }


def test_release_format_batch_is_read_and_references_three_globals(tmp_path):
    d = cifar_batch()
    stream = py2_cpickle(d)
    # what the release references, hence what the loader must admit
    assert pickle_globals(stream) == {
        "numpy.core.multiarray._reconstruct",
        "numpy.ndarray",
        "numpy.dtype",
    }
    with warnings.catch_warnings():  # numpy 2 warns on the numpy.core spelling
        warnings.simplefilter("ignore", DeprecationWarning)
        assert np.array_equal(pickle.loads(stream, encoding="bytes")[b"data"], d[b"data"])
    path = tmp_path / "data_batch_1"
    path.write_bytes(stream)
    rgb, labels = cifar.read_batch(path)
    assert np.array_equal(rgb.reshape(5, 3072), d[b"data"]) and labels.tolist() == d[b"labels"]


@pytest.mark.parametrize("protocol", range(6))
def test_python3_repickled_batches_are_read(tmp_path, protocol):
    d = cifar_batch(seed=protocol)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(d, protocol=protocol))
    rgb, labels = cifar.read_batch(path)
    assert np.array_equal(rgb.reshape(5, 3072), d[b"data"]) and labels.tolist() == d[b"labels"]


class _Payload:
    """Unpickling this calls ``func(*args)``: what a crafted batch file would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.exec": _Payload(exec, code),
        "builtins.eval": _Payload(eval, code),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.eval", "subprocess.call"])
@pytest.mark.parametrize("where", ["top level", "inside the batch dict"])
def test_crafted_batch_is_refused_and_runs_nothing(tmp_path, kind, where):
    marker = tmp_path / "marker"
    payload = _payloads(marker)[kind]
    obj = payload if where == "top level" else {**cifar_batch(), b"batch_label": payload}
    stream = pickle.dumps(obj, protocol=2)
    # the payload is live: a plain pickle.load runs it
    pickle.loads(stream, encoding="bytes")
    assert marker.exists()
    marker.unlink()
    folder = tmp_path / "cifar"
    folder.mkdir()
    for name in cifar.TRAIN_BATCHES[1:]:
        (folder / name).write_bytes(pickle.dumps(cifar_batch(), protocol=2))
    (folder / "data_batch_1").write_bytes(stream)
    with pytest.raises(MalformedDataError, match=r"data_batch_1 is not a CIFAR-10 python batch"):
        get_task("cifar", data_dir=folder)
    with pytest.raises(MalformedDataError, match=r"references the global .*nothing was run"):
        cifar.read_batch(folder / "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({b"data": np.zeros((2, 3072), np.float64)}, "b'data' is ndarray float64"),
        ({b"data": [[0] * 3072] * 2}, "b'data' is list"),
        ({b"data": np.zeros((2, 100), np.uint8)}, r"shape \(2, 100\)"),
        ({b"labels": [0, 12]}, "labels range over 0..12"),
        ({b"labels": [0]}, r"b'labels' shape \(1,\)"),
        ({b"labels": [b"x", b"y"]}, "b'labels' are not integers"),
        ({b"data": None}, "b'data' is NoneType"),
    ],
)
def test_batch_with_wrong_content_is_refused(tmp_path, change, message):
    d = {**cifar_batch(n=2), **change}
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(MalformedDataError, match=message):
        cifar.read_batch(path)
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(MalformedDataError, match="it holds a list"):
        cifar.read_batch(path)
