"""Pathfinder generator: labels checked by flood fill on the pixels; the release-layout loader."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
from PIL import Image

from s4dss.data import pathfinder as pf
from s4dss.data.common import MalformedDataError, MissingDataError


def components(mask: np.ndarray, radius: int) -> np.ndarray:
    """Label connected components of ``mask`` where pixels within Chebyshev ``radius`` link."""
    lab = np.zeros(mask.shape, dtype=int)
    n = 0
    h, w = mask.shape
    for start in zip(*np.nonzero(mask), strict=True):
        if lab[start]:
            continue
        n += 1
        lab[start] = n
        queue = deque([start])
        while queue:
            r, c = queue.popleft()
            for dr in range(-radius, radius + 1):
                for dc in range(-radius, radius + 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not lab[rr, cc]:
                        lab[rr, cc] = n
                        queue.append((rr, cc))
    return lab


def connected_label(img: np.ndarray) -> int:
    """1 if the two markers are joined by a dashed path (gaps of one pixel), else 0."""
    markers = components(img == pf.MARKER_VALUE, radius=1)
    assert markers.max() == 2, "expected exactly two markers"
    paths = components(img > 0, radius=pf.LINK_RADIUS)
    a = set(paths[markers == 1].tolist())
    b = set(paths[markers == 2].tolist())
    assert len(a) == 1 and len(b) == 1
    return int(a == b)


def test_labels_match_flood_fill_and_images_have_distractors():
    rng = np.random.default_rng(0)
    for i in range(60):
        label = i % 2
        img = pf.generate_image(rng, label, n_paths=3)
        assert img.shape == (32, 32) and img.dtype == np.uint8
        assert connected_label(img) == label
        # three separate paths with a link radius of 2: distractors are present
        assert components(img > 0, radius=pf.LINK_RADIUS).max() == 3
        # without bridging the one-pixel gaps the paths really are dashed
        assert components(img > 0, radius=1).max() > 3


def test_configurable_size():
    rng = np.random.default_rng(1)
    img = pf.generate_image(rng, 1, size=48, path_length=30, n_paths=4)
    assert img.shape == (48, 48)
    assert connected_label(img) == 1


def test_deterministic_given_seed(tmp_path):
    a = pf.write_release(tmp_path / "a", 12, seed=5, batch_size=5)
    b = pf.write_release(tmp_path / "b", 12, seed=5, batch_size=5)
    ia, la = pf.read_release(a.parent)
    ib, lb = pf.read_release(b.parent)
    assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    ic, _ = pf.read_release(pf.write_release(tmp_path / "c", 12, seed=6, batch_size=5).parent)
    assert not np.array_equal(ia, ic)


def test_write_release_layout_and_labels(tmp_path):
    base = pf.write_release(tmp_path, 12, seed=2, batch_size=5)
    assert base == tmp_path / "curv_contour_length_14"
    assert sorted(p.name for p in (base / "metadata").iterdir()) == ["0.npy", "1.npy", "2.npy"]
    first = (base / "metadata" / "1.npy").read_text().splitlines()[0].split()
    assert first[:3] == ["imgs/1", "sample_0.png", "0"]
    images, labels = pf.read_release(tmp_path)
    assert images.shape == (12, 32, 32)
    assert abs(int(labels.sum()) - 6) <= 1
    for img, label in zip(images, labels, strict=True):
        assert connected_label(img) == label


def write_fixture(root, labels, size=32):
    """A folder in the exact release layout, with arbitrary pixel content."""
    base = root / "curv_contour_length_14"
    (base / "imgs" / "0").mkdir(parents=True)
    (base / "metadata").mkdir()
    rows = []
    for i, label in enumerate(labels):
        arr = np.full((size, size), 10 * i, dtype=np.uint8)
        Image.fromarray(arr, mode="L").save(base / "imgs" / "0" / f"sample_{i}.png")
        rows.append(f"imgs/0 sample_{i}.png {i} {label} 14 1.5 1.0 0.7 5")
    (base / "metadata" / "0.npy").write_text("\n".join(rows) + "\n")
    return base


def test_loader_reads_release_fixture(tmp_path):
    write_fixture(tmp_path, [0, 1, 1, 0, 1, 0, 0, 1, 1, 0])
    task = pf.load(tmp_path)
    assert (len(task.train), len(task.val), len(task.test)) == (8, 1, 1)
    assert task.seq_len == 1024 and task.d_input == 1 and task.n_classes == 2
    x, y = task.train[0]
    assert x.shape == (1024, 1) and x.dtype == torch.float32
    # each image is constant 10*i: recover i from the pixels and check the label pairing
    labels = [0, 1, 1, 0, 1, 0, 0, 1, 1, 0]
    for ds in (task.train, task.val, task.test):
        for j in range(len(ds)):
            x, y = ds[j]
            i = round(((float(x[0, 0]) * 0.5) + 0.5) * 255 / 10)
            assert y == labels[i]


def test_loader_errors(tmp_path):
    with pytest.raises(MissingDataError, match="metadata"):
        pf.load(tmp_path)
    base = write_fixture(tmp_path, [0, 1])
    (base / "imgs" / "0" / "sample_1.png").unlink()
    with pytest.raises(MissingDataError, match="sample_1.png"):
        pf.load(tmp_path)
    (base / "metadata" / "0.npy").write_text("imgs/0 sample_0.png 0\n")
    with pytest.raises(MalformedDataError, match=r"0\.npy:1"):
        pf.load(tmp_path)


def test_marker_distance_is_no_cue():
    """Both classes have the same distribution of marker distances (within noise)."""
    rng = np.random.default_rng(3)
    dist = {0: [], 1: []}
    for i in range(120):
        img = pf.generate_image(rng, i % 2, size=24, path_length=14, n_paths=2)
        lab = components(img == pf.MARKER_VALUE, radius=1)
        centres = [np.argwhere(lab == k).mean(0) for k in (1, 2)]
        dist[i % 2].append(np.abs(centres[0] - centres[1]).max())
    pos, neg = np.array(dist[1]), np.array(dist[0])
    assert abs(pos.mean() - neg.mean()) < 1.0
    assert abs(np.median(pos) - np.median(neg)) <= 1.0
