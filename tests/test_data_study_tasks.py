"""The study's tasks: digits stretched to length 256, and the UCR problems shipped in aeon."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from s4dss.data import get_task, ucr


def _stack(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(xs).numpy(), np.asarray(ys)


def test_digits_256_holds_each_pixel_four_steps():
    base, long = get_task("digits"), get_task("digits-256")
    assert long.seq_len == 256 and long.d_input == 1 and long.n_classes == 10
    assert long.name == "digits-256"
    for part in ("train", "val", "test"):
        xb, yb = _stack(getattr(base, part))
        xl, yl = _stack(getattr(long, part))
        assert xl.shape == (len(xb), 256, 1)
        np.testing.assert_array_equal(yl, yb)  # same split, same labels
        # pixel p sits at steps 4p .. 4p+3
        np.testing.assert_array_equal(xl.reshape(len(xb), 64, 4), np.repeat(xb, 4, axis=2))
    assert get_task("digits", hold=2).seq_len == 128


@pytest.mark.parametrize("hold", [0, -1, 1.5, True])
def test_digits_hold_must_be_a_positive_integer(hold):
    with pytest.raises(ValueError, match="hold"):
        get_task("digits", hold=hold)


def _aeon(problem: str, split: str):
    import aeon.datasets as datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        X, y = getattr(datasets, ucr.PROBLEMS[problem])(split=split)
    return X[:, 0, :], np.asarray(y).astype(str)


@pytest.mark.parametrize(
    "name, problem, n_classes, length, n_train, n_test",
    [("acsf1", "ACSF1", 10, 1460, 100, 100), ("osuleaf", "OSULeaf", 6, 427, 200, 242)],
)
def test_ucr_task_shapes_split_and_normalisation(name, problem, n_classes, length, n_train, n_test):
    task = get_task(name)
    assert (task.name, task.n_classes, task.seq_len, task.d_input) == (
        name,
        n_classes,
        length,
        1,
    )
    x_tr, y_tr = _stack(task.train)
    x_va, y_va = _stack(task.val)
    x_te, y_te = _stack(task.test)
    assert x_tr.shape[1:] == x_te.shape[1:] == (length, 1) and x_tr.dtype == np.float32
    # the official split: validation carved from train, test untouched
    assert len(x_tr) + len(x_va) == n_train and len(x_te) == n_test
    assert abs(len(x_va) - 0.2 * n_train) <= n_classes  # stratified rounding per class
    # every class in train and in val (stratified), labels 0..C-1
    assert set(y_tr) == set(y_va) == set(range(n_classes)) >= set(y_te)
    # z-normalised per series (population std)
    for x in (x_tr, x_va, x_te):
        np.testing.assert_allclose(x[..., 0].mean(-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(x[..., 0].std(-1), 1.0, atol=1e-5)
    # the test set is aeon's test split, in order, with the same label coding
    raw_te, lab_te = _aeon(problem, "test")
    np.testing.assert_allclose(x_te[..., 0], ucr.znormalise(raw_te), atol=1e-6)
    names = ucr.label_order(_aeon(problem, "train")[1])
    np.testing.assert_array_equal(y_te, [names.index(v) for v in lab_te])
    # train and val are disjoint and together are aeon's training set
    raw_tr, _ = _aeon(problem, "train")
    ours = np.concatenate([x_tr, x_va])[..., 0]
    key = lambda a: sorted(map(tuple, np.round(a, 4)))  # noqa: E731
    assert key(ours) == key(ucr.znormalise(raw_tr).astype(np.float32))


def test_ucr_validation_split_is_seeded():
    a, b, c = (get_task("osuleaf", split_seed=s) for s in (0, 0, 1))
    ya, yb, yc = (_stack(t.val)[1] for t in (a, b, c))
    np.testing.assert_array_equal(_stack(a.val)[0], _stack(b.val)[0])
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(_stack(a.val)[0], _stack(c.val)[0])
    assert len(get_task("osuleaf", val_fraction=0.5).val) > len(a.val)


def test_ucr_helpers_and_errors():
    np.testing.assert_array_equal(ucr.znormalise(np.full((2, 5), 3.0)), 0.0)  # constant series
    z = ucr.znormalise(np.array([[1.0, 2.0, 3.0, 4.0]]))
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-12
    assert ucr.label_order(np.array(["10", "2", "1"])) == ["1", "2", "10"]
    assert ucr.label_order(np.array(["b", "a"])) == ["a", "b"]
    tr, va = ucr.stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2]), 0.5, 0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(10))
    assert 9 in tr  # a class of one item keeps it for training
    with pytest.raises(ValueError, match="val_fraction"):
        ucr.stratified_split(np.zeros(4), 1.0, 0)
    with pytest.raises(ValueError, match="unknown UCR problem"):
        ucr.load("GunPoint")
    with pytest.raises(TypeError, match="acsf1"):
        get_task("acsf1", bogus=1)
