"""ListOps generator rules, checked by an evaluator written here, and the TSV loader."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from s4dss.data import listops
from s4dss.data.common import MalformedDataError, MissingDataError

SMALL = dict(max_depth=5, max_args=5, min_length=10, max_length=120)


def evaluate_tokens(tokens: list[str]) -> tuple[int, int, list[int]]:
    """Independent stack evaluator on the parenthesis-free token stream.

    Returns (value, depth of the tree, argument counts of all operators). Depth counts nodes
    from the root (a bare digit has depth 1) the way the generator's ``max_depth`` does.
    """
    stack: list[tuple[str, list[int], int]] = []  # (operator, args, depth of operator node)
    arg_counts: list[int] = []
    max_depth = 0
    result = None
    for tok in tokens:
        depth = len(stack) + 1
        max_depth = max(max_depth, depth)
        if tok.startswith("["):
            stack.append((tok, [], depth))
        elif tok == "]":
            op, args, _ = stack.pop()
            arg_counts.append(len(args))
            if op == "[MIN":
                v = min(args)
            elif op == "[MAX":
                v = max(args)
            elif op == "[MED":
                v = int(statistics.median(args))  # median of an even count is truncated
            elif op == "[SM":
                v = sum(args) % 10
            else:
                raise AssertionError(f"unknown operator {op}")
            if stack:
                stack[-1][1].append(v)
            else:
                result = v
        else:
            v = int(tok)
            assert 0 <= v <= 9
            if stack:
                stack[-1][1].append(v)
            else:
                result = v
    assert not stack, "unbalanced brackets"
    return result, max_depth, arg_counts


def test_labels_match_independent_evaluator_and_rules():
    rows = listops.generate(300, seed=3, **SMALL)
    assert len({s for s, _ in rows}) == 300  # deduplicated
    all_args = []
    for source, target in rows:
        # parentheses balance and are dropped by tokenisation
        assert source.count("(") == source.count(")")
        tokens = [t for t in source.split() if t not in "()"]
        assert SMALL["min_length"] < len(tokens) < SMALL["max_length"]
        value, depth, args = evaluate_tokens(tokens)
        assert value == target, source
        assert depth <= SMALL["max_depth"]
        all_args += args
        ids = listops.tokenize(source)
        assert len(ids) == len(tokens)
        assert (ids != listops.TOKEN_IDS[listops.UNK]).all()
    assert min(all_args) >= 2 and max(all_args) <= SMALL["max_args"]
    assert set(all_args) == set(range(2, SMALL["max_args"] + 1))
    # every label occurs: the task is not degenerate
    assert set(t for _, t in rows) == set(range(10))


def test_even_median_case_is_exercised():
    rows = listops.generate(300, seed=3, **SMALL)
    # make sure MED with an even number of arguments occurs, so the truncation rule is tested
    found = False
    for source, _ in rows:
        tokens = [t for t in source.split() if t not in "()"]
        stack = []
        for tok in tokens:
            if tok.startswith("["):
                stack.append([tok, 0])
            elif tok == "]":
                op, n = stack.pop()
                found |= op == "[MED" and n % 2 == 0
                if stack:
                    stack[-1][1] += 1
            elif stack:
                stack[-1][1] += 1
    assert found


def test_release_length_rules_default():
    rows = listops.generate(3, seed=0)
    for source, target in rows:
        tokens = [t for t in source.split() if t not in "()"]
        assert 500 < len(tokens) < 2000
        assert evaluate_tokens(tokens)[0] == target


def test_deterministic_given_seed():
    a = listops.generate(50, seed=7, **SMALL)
    b = listops.generate(50, seed=7, **SMALL)
    c = listops.generate(50, seed=8, **SMALL)
    assert a == b
    assert a != c


def test_unreachable_bounds_error():
    with pytest.raises(RuntimeError, match="length bounds"):
        listops.generate(
            1, seed=0, max_depth=2, max_args=2, min_length=50, max_length=60, max_tries=1000
        )


def test_write_release_and_load_roundtrip(tmp_path):
    paths = listops.write_release(tmp_path, 40, 10, 10, seed=1, **SMALL)
    assert sorted(p.name for p in paths.values()) == [
        "basic_test.tsv",
        "basic_train.tsv",
        "basic_val.tsv",
    ]
    text = (tmp_path / "basic_train.tsv").read_text().splitlines()
    assert text[0] == "Source\tTarget"
    assert len(text) == 41
    splits = [set(listops.read_tsv(p)[0]) for p in paths.values()]
    assert (
        not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not (splits[1] & splits[2])
    )
    task = listops.load(tmp_path)
    assert (len(task.train), len(task.val), len(task.test)) == (40, 10, 10)
    assert task.n_classes == 10 and task.vocab_size == len(listops.VOCAB)
    x, y = task.train[0]
    assert x.dtype.is_floating_point is False and 0 <= y <= 9
    xb, yb, lengths = task.collate([task.train[i] for i in range(4)])
    assert xb.shape == (4, int(lengths.max()))
    assert (xb[0, lengths[0] :] == listops.PAD_ID).all()


def test_reads_release_fixture(tmp_path):
    # written exactly as the LRA script writes listops-1000: csv.writer with a tab delimiter,
    # hence CRLF line ends
    import csv

    rows = {
        "train": [
            ["( ( ( ( [MAX 2 ) 9 ) ( ( [MIN 4 ) 7 ) ] ) ) ] )", 9],
            ["( ( ( [SM 5 ) 8 ) ] )", 3],
        ],
        "val": [["( ( ( [MED 1 ) 4 ) ] )", 2]],
        "test": [["( ( ( [MED 1 ) 4 ) ] )", 2]],
    }
    for split, data in rows.items():
        with open(tmp_path / f"basic_{split}.tsv", "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["Source", "Target"])
            writer.writerows(data)
    assert b"\r\n" in (tmp_path / "basic_train.tsv").read_bytes()
    task = listops.load(tmp_path)
    x, y = task.train[0]
    ids = listops.TOKEN_IDS
    expected = ["[MAX", "2", "9", "[MIN", "4", "7", "]", "]"]
    assert x.tolist() == [ids[t] for t in expected]
    assert y == 9
    assert task.val[0][1] == 2


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(MissingDataError, match=r"basic_train\.tsv.*Source"):
        listops.load(tmp_path)
    (tmp_path / "basic_train.tsv").write_text("src\ttgt\n1\t1\n")
    with pytest.raises(MalformedDataError, match="header"):
        listops.read_tsv(tmp_path / "basic_train.tsv")
    (tmp_path / "basic_train.tsv").write_text("Source\tTarget\n( [MAX 1 2 ] )\tx\n")
    with pytest.raises(MalformedDataError, match=r":2: Target"):
        listops.read_tsv(tmp_path / "basic_train.tsv")
    (tmp_path / "basic_train.tsv").write_text("Source\tTarget\n( [MAX 1 2 ] )\n")
    with pytest.raises(MalformedDataError, match="2 tab-separated"):
        listops.read_tsv(tmp_path / "basic_train.tsv")


def test_tokenize_maps_unknown():
    ids = listops.tokenize("( [FOO 1 ] )")
    assert ids[0] == listops.TOKEN_IDS[listops.UNK]
    assert np.array_equal(ids[1:], [listops.TOKEN_IDS["1"], listops.TOKEN_IDS["]"]])
