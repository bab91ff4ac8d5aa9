"""Pathfinder: a generator in the LRA release layout, and a loader for that layout.

Release layout (``pathfinder32/curv_contour_length_14``)::

    <root>/<difficulty>/metadata/<batch>.npy     # text, despite the suffix: one row per image
    <root>/<difficulty>/imgs/<batch>/sample_<i>.png

A metadata row is whitespace-separated: ``imgs/<batch> sample_<i>.png <i> <label> ...``; the
image path is ``<root>/<difficulty>/<field 0>/<field 1>`` and field 3 is the label (1 when the
two markers are connected). Images are 8-bit greyscale PNGs.

The generator's rules, which the tests check on the pixels alone:

- every path is a smooth random curve traced pixel by pixel (an 8-connected chain), drawn
  dashed: ``dash`` pixels on, ``gap`` (1) pixel off, so consecutive drawn pixels of one path are
  at Chebyshev distance <= 2;
- pixels of different paths are at Chebyshev distance >= 3, so "linked within distance 2" is
  exactly "same path";
- markers are 3x3 squares of value 255 on path ends (path pixels have value ``PATH_VALUE``);
  a positive image has one path carrying both markers, a negative image two paths carrying one
  marker each; both have ``n_paths`` paths in total, the rest unmarked distractors;
- the markers' distance carries no label information: in a negative image the second marker
  is placed where a path of the same length from the first marker could end (a first version
  without this rule let a small model reach 84% on 16x16 images within one epoch from the
  marker distance alone).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s4dss.data.common import (
    MalformedDataError,
    MissingDataError,
    PadCollate,
    SequenceDataset,
    TaskData,
    pixels_to_features,
    require_dir,
    split_indices,
    subset,
)

PATH_VALUE = 160
MARKER_VALUE = 255
LINK_RADIUS = 2  # drawn pixels of one path link within this Chebyshev distance
MIN_MARKER_DISTANCE = 6  # Chebyshev distance between the two markers' centres
DEFAULT_DIFFICULTY = "curv_contour_length_14"
LAYOUT = (
    "<root>/<difficulty>/metadata/<batch>.npy (text rows 'imgs/<batch> sample_<i>.png <i> "
    "<label> ...') and <root>/<difficulty>/imgs/<batch>/sample_<i>.png (greyscale PNG)"
)


def _trace(rng: np.random.Generator, size: int, length: int, curvature: float, start=None):
    """A smooth random 8-connected pixel chain of ``length`` distinct pixels, or None."""
    lo, hi = 1.0, size - 2.0  # keep one pixel of border for the 3x3 markers
    y, x = rng.uniform(lo, hi, size=2) if start is None else map(float, start)
    theta = rng.uniform(0, 2 * np.pi)
    chain = [(int(np.floor(y + 0.5)), int(np.floor(x + 0.5)))]
    for _ in range(4 * length):
        theta += rng.normal(0.0, curvature)
        y, x = y + np.sin(theta), x + np.cos(theta)
        if not (lo <= y <= hi and lo <= x <= hi):
            return None
        # a unit step changes each rounded coordinate by at most 1: the chain is 8-connected
        p = (int(np.floor(y + 0.5)), int(np.floor(x + 0.5)))
        if p != chain[-1]:
            chain.append(p)
        if len(chain) == length:
            return chain
    return None


def _cheb(p, q) -> int:
    return max(abs(p[0] - q[0]), abs(p[1] - q[1]))


def _square(p, size):
    r, c = p
    return [
        (r + dr, c + dc)
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
        if 0 <= r + dr < size and 0 <= c + dc < size
    ]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = np.zeros_like(mask)
    n = mask.shape[0]
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            src = mask[max(0, -dr) : n - max(0, dr), max(0, -dc) : n - max(0, dc)]
            out[max(0, dr) : n - max(0, -dr), max(0, dc) : n - max(0, -dc)] |= src
    return out


def generate_image(
    rng: np.random.Generator,
    label: int,
    *,
    size: int = 32,
    path_length: int = 20,
    n_paths: int = 3,
    dash: int = 3,
    gap: int = 1,
    curvature: float = 0.3,
    max_tries: int = 2000,
) -> np.ndarray:
    """Draw one Pathfinder image (uint8, ``size x size``) with the given label.

    Raises
    ------
    RuntimeError
        If the paths do not fit after ``max_tries`` attempts (image too small for the request).
    """
    if gap != 1:
        # the connectivity rule (link radius 2) relies on one-pixel gaps
        raise ValueError(f"gap must be 1 (the documented link radius is 2), got {gap}")
    n_marked = 1 if label else 2
    if n_paths < n_marked:
        raise ValueError(f"n_paths must be >= {n_marked} for label {label}")
    for _ in range(max_tries):
        img = np.zeros((size, size), dtype=np.uint8)
        occupied = np.zeros((size, size), dtype=bool)
        first_marker = None  # centre of the marker on path 0
        ok = True
        for k in range(n_paths):
            placed = False
            for _ in range(50):
                start = None
                if not label and k == 1:
                    # the second marker sits where a positive path from the first marker could
                    # end, so marker distance gives no clue about the label
                    phantom = _trace(rng, size, path_length, curvature, start=first_marker)
                    if phantom is None or _cheb(phantom[0], phantom[-1]) < MIN_MARKER_DISTANCE:
                        continue
                    start = phantom[-1]
                chain = _trace(rng, size, path_length, curvature, start=start)
                if chain is None:
                    continue
                if label and k == 0 and _cheb(chain[0], chain[-1]) < MIN_MARKER_DISTANCE:
                    continue
                drawn = [p for i, p in enumerate(chain) if i % (dash + gap) < dash]
                drawn.append(chain[-1])
                markers = []
                if k < n_marked:
                    markers = _square(chain[0], size)
                    if label:
                        markers += _square(chain[-1], size)
                pix = drawn + markers
                forbidden = _dilate(occupied, LINK_RADIUS)
                if any(forbidden[p] for p in pix):
                    continue
                for p in drawn:
                    img[p] = PATH_VALUE
                for p in markers:
                    img[p] = MARKER_VALUE
                for p in pix:
                    occupied[p] = True
                if k == 0:
                    first_marker = chain[0]
                placed = True
                break
            if not placed:
                ok = False
                break
        if ok:
            return img
    raise RuntimeError(
        f"could not place {n_paths} paths of length {path_length} in a {size}x{size} image"
    )


def write_release(
    root: Path,
    n: int,
    *,
    seed: int = 0,
    difficulty: str = DEFAULT_DIFFICULTY,
    batch_size: int = 1000,
    **rules,
) -> Path:
    """Generate ``n`` images (balanced labels) in the release layout under ``root/difficulty``.

    Returns the difficulty folder. Labels alternate in a shuffled order so that each batch is
    close to balanced.
    """
    from PIL import Image

    base = Path(root) / difficulty
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    for b in range(0, n, batch_size):
        batch = b // batch_size
        img_dir = base / "imgs" / str(batch)
        img_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(b, min(n, b + batch_size)):
            label = int(labels[i])
            img = generate_image(rng, label, **rules)
            name = f"sample_{i - b}.png"
            Image.fromarray(img, mode="L").save(img_dir / name)
            # fields after the label mirror the release's extra columns loosely (unused)
            rows.append(f"imgs/{batch} {name} {i - b} {label} {rules.get('path_length', 20)}")
        meta = base / "metadata" / f"{batch}.npy"
        meta.parent.mkdir(parents=True, exist_ok=True)
        tmp = meta.with_name(meta.name + ".tmp")
        tmp.write_text("\n".join(rows) + "\n")
        tmp.replace(meta)
    return base


def read_release(root: Path, difficulty: str = DEFAULT_DIFFICULTY):
    """Read all images and labels of one difficulty folder.

    Returns
    -------
    images : ndarray of uint8, shape (n, size, size)
    labels : ndarray of int64, shape (n,)
    """
    from PIL import Image

    base = Path(root) / difficulty
    require_dir(base / "metadata", LAYOUT)
    metas = [p for p in (base / "metadata").glob("*.npy")]
    if not metas:
        raise MissingDataError(f"no metadata/*.npy files in {base}. Expected layout: {LAYOUT}")
    try:
        metas.sort(key=lambda p: int(p.stem))
    except ValueError:
        raise MalformedDataError(
            f"metadata files in {base / 'metadata'} must be named <integer>.npy"
        ) from None
    images, labels = [], []
    for meta in metas:
        for lineno, line in enumerate(meta.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4 or fields[3] not in ("0", "1"):
                raise MalformedDataError(
                    f"{meta}:{lineno}: expected 'imgs/<batch> sample_<i>.png <i> <label 0|1> "
                    f"...', got {line!r}"
                )
            path = base / fields[0] / fields[1]
            if not path.is_file():
                raise MissingDataError(
                    f"{meta}:{lineno} lists image {path}, which is missing. "
                    f"Expected layout: {LAYOUT}"
                )
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L"))
            if images and arr.shape != images[0].shape:
                raise MalformedDataError(
                    f"{path} is {arr.shape}, other images are {images[0].shape}"
                )
            images.append(arr)
            labels.append(int(fields[3]))
    if not images:
        raise MalformedDataError(f"metadata files in {base / 'metadata'} list no images")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load(
    root: Path,
    *,
    difficulty: str = DEFAULT_DIFFICULTY,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_seed: int = 42,
) -> TaskData:
    """Load a Pathfinder folder as a sequence task (length size*size, one feature per pixel).

    The release has no official split; like the S4 code base we split 80/10/10 at random with a
    fixed seed. Pixels are scaled to [-1, 1].
    """
    images, labels = read_release(root, difficulty)
    n, h, w = images.shape
    x = images.reshape(n, h * w)  # uint8; scaled per item
    parts = split_indices(n, split, split_seed)
    sets = [SequenceDataset(subset(x, idx), labels[idx], pixels_to_features) for idx in parts]
    return TaskData(
        name="pathfinder",
        train=sets[0],
        val=sets[1],
        test=sets[2],
        n_classes=2,
        seq_len=h * w,
        d_input=1,
        collate=PadCollate(pad_value=0.0),
    )
