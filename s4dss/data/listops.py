"""ListOps: the LRA generator, the release's TSV format, and a loader.

The generator follows the LRA rules (reference.md section 8, and the original
``lra_benchmarks/data/listops.py``): operators MIN, MAX, MED (integer median), SM (sum mod 10)
over digits 0-9; below ``max_depth`` a node is a leaf with probability ``leaf_prob`` (0.75),
otherwise an operator with ``randint(2, max_args)`` arguments; at ``max_depth`` it is a leaf.
Samples are kept when their token count (operators, digits and closing brackets) is strictly
between ``min_length`` and ``max_length``, and are deduplicated across all splits.

The release files are ``listops-1000/basic_{train,val,test}.tsv`` with the header
``Source\\tTarget``; ``Source`` is the bracketed string, e.g.
``( ( ( [MAX 2 ) 9 ) ] )``. Parentheses carry no information and are dropped when tokenising.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

from s4dss.data.common import (
    MalformedDataError,
    PadCollate,
    SequenceDataset,
    TaskData,
    require_file,
)

MIN, MAX, MED, SM, END = "[MIN", "[MAX", "[MED", "[SM", "]"
OPERATORS = (MIN, MAX, MED, SM)
PAD, UNK = "<pad>", "<unk>"
# Fixed vocabulary: a vocabulary built from the data would differ between splits and runs.
VOCAB = (PAD, UNK, *(str(d) for d in range(10)), *OPERATORS, END)
TOKEN_IDS = {t: i for i, t in enumerate(VOCAB)}
PAD_ID = 0
SPLITS = ("train", "val", "test")
LAYOUT = "<data_dir>/basic_{train,val,test}.tsv, tab-separated, header 'Source\\tTarget'"


def _generate_tree(rng: random.Random, depth: int, max_depth: int, max_args: int, leaf_prob):
    """One random tree in LRA's nested-pair form; returns (tree, token count)."""
    r = rng.random() if depth < max_depth else 1.0
    if r > 1.0 - leaf_prob:
        return rng.choice(range(10)), 1
    length = 2  # the operator token and its closing bracket
    values = []
    for _ in range(rng.randint(2, max_args)):
        sub, sub_len = _generate_tree(rng, depth + 1, max_depth, max_args, leaf_prob)
        values.append(sub)
        length += sub_len
    t = (rng.choice(OPERATORS), values[0])
    for v in values[1:]:
        t = (t, v)
    return (t, END), length


def _to_string(t) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, int):
        return str(t)
    return "( " + _to_string(t[0]) + " " + _to_string(t[1]) + " )"


def _to_value(t):
    """Evaluate a nested-pair tree (the LRA reference semantics)."""
    if not isinstance(t, tuple):
        return t
    left, right = _to_value(t[0]), _to_value(t[1])
    if left in OPERATORS:  # an operator with its first argument: an unsaturated function
        return (left, [right])
    if right == END:
        op, args = left
        if op == MIN:
            return min(args)
        if op == MAX:
            return max(args)
        if op == MED:
            return int(np.median(args))
        return int(np.sum(args) % 10)
    return (left[0], left[1] + [right])


def generate(
    n: int,
    *,
    seed: int = 0,
    max_depth: int = 10,
    max_args: int = 10,
    min_length: int = 500,
    max_length: int = 2000,
    leaf_prob: float = 0.75,
    exclude: set[str] | None = None,
    max_tries: int | None = None,
) -> list[tuple[str, int]]:
    """Generate ``n`` distinct ListOps samples ``(source, target)``.

    Parameters
    ----------
    n : int
        Number of samples.
    seed : int
        Seed of a private ``random.Random``; the global RNG is not touched.
    max_depth, max_args, min_length, max_length, leaf_prob
        The LRA rules (defaults are the release's values). Length bounds are exclusive.
    exclude : set of str, optional
        Sources that must not be produced (used to keep splits disjoint); updated in place.
    max_tries : int, optional
        Give up after this many trees (default ``10000 * n + 100000``), with a clear error when
        the length bounds are unreachable for the depth/argument limits.

    Returns
    -------
    list of (str, int)
        Bracketed source strings in the release format and their values 0..9.
    """
    if not 0 < leaf_prob <= 1:
        raise ValueError(f"leaf_prob must be in (0, 1], got {leaf_prob}")
    if max_args < 2:
        raise ValueError(f"max_args must be >= 2, got {max_args}")
    rng = random.Random(seed)
    seen = exclude if exclude is not None else set()
    out: list[tuple[str, int]] = []
    tries = 0
    limit = max_tries if max_tries is not None else 10000 * n + 100000
    while len(out) < n:
        tries += 1
        if tries > limit:
            raise RuntimeError(
                f"ListOps generator produced only {len(out)}/{n} samples in {limit} trees; "
                f"length bounds ({min_length}, {max_length}) may be unreachable with "
                f"max_depth={max_depth}, max_args={max_args}"
            )
        tree, length = _generate_tree(rng, 1, max_depth, max_args, leaf_prob)
        if not min_length < length < max_length:
            continue
        source = _to_string(tree)
        if source in seen:
            continue
        seen.add(source)
        out.append((source, int(_to_value(tree))))
    return out


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    """Write rows in the release format (header ``Source\\tTarget``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write("Source\tTarget\n")
        for source, target in rows:
            f.write(f"{source}\t{target}\n")
    tmp.replace(path)  # a half-written file never carries the final name


def write_release(
    data_dir: Path, n_train: int, n_val: int, n_test: int, *, seed: int = 0, **rules
) -> dict[str, Path]:
    """Generate disjoint train/val/test splits into ``data_dir/basic_{split}.tsv``."""
    seen: set[str] = set()
    paths = {}
    for k, (split, n) in enumerate(zip(SPLITS, (n_train, n_val, n_test), strict=True)):
        # distinct seeds per split; ``seen`` keeps the splits disjoint
        rows = generate(n, seed=seed * 1000 + k, exclude=seen, **rules)
        paths[split] = Path(data_dir) / f"basic_{split}.tsv"
        write_tsv(paths[split], rows)
    return paths


def tokenize(source: str) -> np.ndarray:
    """Token ids of a source string; parentheses are dropped, unknown tokens map to <unk>."""
    unk = TOKEN_IDS[UNK]
    return np.array(
        [TOKEN_IDS.get(t, unk) for t in source.split() if t not in ("(", ")")], dtype=np.int64
    )


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    """Read one release TSV; returns sources and integer targets.

    Raises
    ------
    MissingDataError
        If the file does not exist.
    MalformedDataError
        If the header, a row's field count or a target is wrong (the message gives the line).
    """
    path = require_file(Path(path), LAYOUT)
    sources, targets = [], []
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["Source", "Target"]:
            raise MalformedDataError(
                f"{path}: first line must be the header 'Source\\tTarget', got {header!r}. "
                f"Expected layout: {LAYOUT}"
            )
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise MalformedDataError(
                    f"{path}:{lineno}: expected 2 tab-separated fields (Source, Target), "
                    f"got {len(row)}"
                )
            try:
                target = int(row[1])
            except ValueError:
                raise MalformedDataError(
                    f"{path}:{lineno}: Target must be an integer 0..9, got {row[1]!r}"
                ) from None
            if not 0 <= target <= 9:
                raise MalformedDataError(f"{path}:{lineno}: Target {target} is not in 0..9")
            sources.append(row[0])
            targets.append(target)
    if not sources:
        raise MalformedDataError(f"{path} has a header but no samples")
    return sources, targets


def load(data_dir: Path, *, max_length: int | None = None, pad_side: str = "right") -> TaskData:
    """Load ``data_dir/basic_{train,val,test}.tsv`` (the real ``listops-1000`` or generated).

    Parameters
    ----------
    data_dir : Path
        Folder holding the three TSV files.
    max_length : int, optional
        Truncate sequences to this many tokens (the release needs 2000; default: no limit).
    pad_side : {"right", "left"}
        Passed to :class:`PadCollate`.
    """
    data_dir = Path(data_dir)
    sets = {}
    longest = 0
    for split in SPLITS:
        sources, targets = read_tsv(data_dir / f"basic_{split}.tsv")
        xs = [tokenize(s)[:max_length] for s in sources]
        longest = max(longest, max(len(x) for x in xs))
        sets[split] = SequenceDataset(xs, targets)
    return TaskData(
        name="listops",
        train=sets["train"],
        val=sets["val"],
        test=sets["test"],
        n_classes=10,
        seq_len=longest,
        vocab_size=len(VOCAB),
        pad_id=PAD_ID,
        collate=PadCollate(pad_value=PAD_ID, side=pad_side),
    )
