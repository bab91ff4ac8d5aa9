"""CIFAR, IMDB, AAN, digits and the registry, on fixture files in the exact release formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from s4dss.data import MalformedDataError, MissingDataError, aan, cifar, get_task, imdb


def write_cifar(folder, n_per_batch=4, seed=0):
    """CIFAR-10 python batches: pickled dicts with bytes keys, as the official tarball has."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [*cifar.TRAIN_BATCHES, "test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        d = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [b"x.png"] * n_per_batch,
        }
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
        batches[name] = (data, labels)
    return batches


def test_cifar_grey_sequences(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    task = get_task("cifar", data_dir=tmp_path, val_fraction=0.25)
    assert (len(task.train), len(task.val), len(task.test)) == (15, 5, 4)
    data, labels = batches["test_batch"]
    x, y = task.test[1]
    assert x.shape == (1024, 1) and y == labels[1]
    # pixel (row 3, col 5): grey from the R, G, B planes at offsets 0, 1024, 2048
    k = 3 * 32 + 5
    r, g, b = (float(data[1, k + 1024 * c]) for c in range(3))
    grey = 0.2989 * r + 0.5870 * g + 0.1140 * b
    assert float(x[k, 0]) == pytest.approx((round(grey) / 255 - 0.5) / 0.5, abs=1e-6)
    tok = get_task("cifar", data_dir=tmp_path / "cifar-10-batches-py", tokens=True)
    assert tok.vocab_size == 256 and int(tok.test[1][0][k]) == round(grey)


def test_cifar_errors(tmp_path):
    with pytest.raises(MissingDataError, match="data_batch_1"):
        get_task("cifar", data_dir=tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(MalformedDataError, match="data_batch_3.*CIFAR-10 python batch"):
        get_task("cifar", data_dir=tmp_path)


def test_imdb_folders_and_tsv_agree(tmp_path):
    reviews = {
        ("train", "pos"): ["Great film!\nLoved it.", "Wonderful\tacting"],
        ("train", "neg"): ["Awful.", "Bad plot", "Boring \u00e9t\u00e9"],
        ("test", "pos"): ["Nice"],
        ("test", "neg"): ["Meh"],
    }
    root = tmp_path / "aclImdb"
    for (split, lab), texts in reviews.items():
        (root / split / lab).mkdir(parents=True)
        for i, t in enumerate(texts):
            (root / split / lab / f"{i}_{7 if lab == 'pos' else 2}.txt").write_text(t)
    tsv = tmp_path / "tsv"
    tsv.mkdir()
    for split in ("train", "test"):
        lines = ["label\ttext"]
        for lab in ("neg", "pos"):
            for t in reviews[(split, lab)]:
                esc = t.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                lines.append(f"{1 if lab == 'pos' else 0}\t{esc}")
        (tsv / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    a = imdb.read_split(tmp_path, "train")
    b = imdb.read_split(tsv, "train")
    assert sorted(zip(*a, strict=True)) == sorted(zip(*b, strict=True))
    task = get_task("imdb", data_dir=tmp_path, max_length=8, val_fraction=0.2)
    assert (len(task.train), len(task.val), len(task.test)) == (4, 1, 2)
    assert task.vocab_size == 257 and task.pad_id == 0
    x, y = task.test[1]  # "Nice", pos
    assert y == 1 and x.tolist() == [c + 1 for c in b"Nice"]
    longest = max(len(task.train[i][0]) for i in range(len(task.train)))
    assert longest == 8  # truncated to max_length bytes


def test_imdb_errors(tmp_path):
    with pytest.raises(MissingDataError, match=r"train.*pos,neg"):
        get_task("imdb", data_dir=tmp_path)
    (tmp_path / "train.tsv").write_text("label\ttext\nmaybe\thello\n")
    with pytest.raises(MalformedDataError, match=r"train\.tsv:2"):
        imdb.read_split(tmp_path, "train")


def test_aan_pairs(tmp_path):
    rows = {
        "train": ["1.0\tA1\tB1\tfirst text\tsecond", "0.0\tA2\tB2\tx\tyy"],
        "eval": ["1\tA3\tB3\tabc\tde"],
        "test": ["0\tA4\tB4\tq\tr"],
    }
    for name, lines in rows.items():
        (tmp_path / f"new_aan_pairs.{name}.tsv").write_text("\n".join(lines) + "\n")
    task = get_task("aan", data_dir=tmp_path)
    assert task.pair and task.n_classes == 2
    (x1, x2), y = task.train[0]
    assert y == 1 and x1.tolist() == [c + 1 for c in b"first text"]
    assert x2.tolist() == [c + 1 for c in b"second"]
    xb, yb, lengths = task.collate([task.train[0], task.train[1]])
    assert xb.shape == (2, 2, 10) and yb.tolist() == [1, 0]
    assert lengths.tolist() == [[10, 6], [1, 2]]
    assert task.val[0][1] == 1


def test_aan_errors(tmp_path):
    with pytest.raises(MissingDataError, match=r"new_aan_pairs\.train\.tsv"):
        get_task("aan", data_dir=tmp_path)
    (tmp_path / "new_aan_pairs.train.tsv").write_text("1\tA\tB\tonly four\n")
    with pytest.raises(MalformedDataError, match="5 tab-separated"):
        aan.read_tsv(tmp_path / "new_aan_pairs.train.tsv")
    (tmp_path / "new_aan_pairs.train.tsv").write_text("2\tA\tB\tt1\tt2\n")
    with pytest.raises(MalformedDataError, match="label must be 0 or 1"):
        aan.read_tsv(tmp_path / "new_aan_pairs.train.tsv")


def test_digits_builtin():
    task = get_task("digits")
    assert task.n_classes == 10 and task.seq_len == 64 and task.d_input == 1
    n = len(task.train) + len(task.val) + len(task.test)
    assert n == 1797
    x, y = task.train[0]
    assert x.shape == (64, 1) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_registry_errors_and_synth_reuse(tmp_path):
    with pytest.raises(KeyError, match="known tasks"):
        get_task("nope")
    with pytest.raises(TypeError, match="digits"):
        get_task("digits", bogus=1)
    with pytest.raises(ValueError, match="data_dir"):
        get_task("listops")
    kw = dict(n_train=20, n_val=5, n_test=5, max_depth=4, max_args=4, min_length=5, max_length=40)
    a = get_task("listops-synth", data_dir=tmp_path, **kw)
    b = get_task("listops-synth", data_dir=tmp_path, **kw)  # reuses the files
    assert [a.train[i][1] for i in range(20)] == [b.train[i][1] for i in range(20)]
    with pytest.raises(ValueError, match="generated with"):
        get_task("listops-synth", data_dir=tmp_path, **{**kw, "seed": 1})
    pf = get_task("pathfinder-synth", data_dir=tmp_path / "pf", n=20, size=24, path_length=14)
    assert pf.seq_len == 576 and len(pf.train) == 16
