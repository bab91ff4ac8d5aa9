"""AAN document-pair retrieval (LRA "Retrieval"): the ``new_aan_pairs`` TSVs.

Expected layout::

    <data_dir>/new_aan_pairs.{train,eval,test}.tsv

Each line has five tab-separated fields and no header: ``label id1 id2 text1 text2`` with the
label written as ``0``/``1`` or ``0.0``/``1.0``. Texts become byte tokens (id = byte + 1, 0 is
padding), each cut to ``max_length`` (LRA: 4000). Items are ``((x1, x2), y)`` and batches
``(B, 2, L)``; the model must encode both documents (a two-tower classifier).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from s4dss.data.common import (
    MalformedDataError,
    PadCollate,
    PairDataset,
    TaskData,
    bytes_to_ids,
    require_file,
)

SPLITS = {"train": "train", "val": "eval", "test": "test"}
LAYOUT = "<data_dir>/new_aan_pairs.{train,eval,test}.tsv, 5 tab-separated fields, no header"


def read_tsv(path: Path, max_length: int = 4000):
    """Read one pairs file; returns (texts1, texts2, labels) with texts as id arrays."""
    path = require_file(Path(path), LAYOUT)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    x1, x2, ys = [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not row:
                continue
            if len(row) != 5:
                raise MalformedDataError(
                    f"{path}:{lineno}: expected 5 tab-separated fields "
                    f"(label, id1, id2, text1, text2), got {len(row)}"
                )
            try:
                label = float(row[0])
            except ValueError:
                label = -1.0
            if label not in (0.0, 1.0):
                raise MalformedDataError(f"{path}:{lineno}: label must be 0 or 1, got {row[0]!r}")
            ys.append(int(label))
            x1.append(bytes_to_ids(row[3].encode("utf-8"), max_length))
            x2.append(bytes_to_ids(row[4].encode("utf-8"), max_length))
    if not ys:
        raise MalformedDataError(f"{path} holds no pairs. Expected layout: {LAYOUT}")
    return x1, x2, ys


def load(data_dir: Path, *, max_length: int = 4000) -> TaskData:
    """Load the three AAN pair files."""
    sets = {
        split: PairDataset(*read_tsv(Path(data_dir) / f"new_aan_pairs.{name}.tsv", max_length))
        for split, name in SPLITS.items()
    }
    return TaskData(
        name="aan",
        train=sets["train"],
        val=sets["val"],
        test=sets["test"],
        n_classes=2,
        seq_len=max_length,
        vocab_size=257,
        pad_id=0,
        collate=PadCollate(pad_value=0),
        pair=True,
    )
