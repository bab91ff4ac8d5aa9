"""IMDB reviews as byte sequences (LRA "Text").

Two on-disk formats are accepted:

- the official ``aclImdb_v1.tar.gz`` unpacked: ``<data_dir>/{train,test}/{pos,neg}/*.txt``
  (``<data_dir>`` may also be the parent of ``aclImdb``);
- TSV files ``<data_dir>/{train,test}.tsv`` with the header ``label\\ttext`` and labels
  ``0``/``1`` (or ``neg``/``pos``); tabs and newlines inside a review must be escaped as
  ``\\t`` and ``\\n``.

Bytes are tokens: byte b has id b + 1, id 0 is padding (vocabulary 257). Reviews are cut to
``max_length`` bytes (LRA: 4096).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from s4dss.data.common import (
    MalformedDataError,
    MissingDataError,
    PadCollate,
    SequenceDataset,
    TaskData,
    bytes_to_ids,
    split_indices,
    subset,
)

LAYOUT = (
    "either <data_dir>/{train,test}/{pos,neg}/*.txt (aclImdb) or <data_dir>/{train,test}.tsv "
    "with header 'label\\ttext'"
)
LABELS = {"0": 0, "1": 1, "neg": 0, "pos": 1}


def _read_folders(split_dir: Path) -> tuple[list[bytes], list[int]]:
    texts, labels = [], []
    for name, label in (("neg", 0), ("pos", 1)):
        folder = split_dir / name
        if not folder.is_dir():
            raise MissingDataError(f"expected folder {folder} is missing. Expected: {LAYOUT}")
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise MissingDataError(f"no *.txt reviews in {folder}. Expected: {LAYOUT}")
        for p in files:
            texts.append(p.read_bytes())
            labels.append(label)
    return texts, labels


def _unescape(s: str) -> str:
    return s.replace("\\t", "\t").replace("\\n", "\n").replace("\\\\", "\\")


def _read_tsv(path: Path) -> tuple[list[bytes], list[int]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # reviews can exceed csv's 128 kB default
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != ["label", "text"]:
            raise MalformedDataError(f"{path}: header must be 'label\\ttext', got {header!r}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2 or row[0].strip() not in LABELS:
                raise MalformedDataError(
                    f"{path}:{lineno}: expected '<0|1|neg|pos>\\t<text>', got {len(row)} fields"
                    f" starting {row[:1]!r}"
                )
            labels.append(LABELS[row[0].strip()])
            texts.append(_unescape(row[1]).encode("utf-8"))
    return texts, labels


def read_split(data_dir: Path, split: str) -> tuple[list[bytes], list[int]]:
    """Read the ``train`` or ``test`` split from whichever supported format is present."""
    data_dir = Path(data_dir)
    if (data_dir / "aclImdb").is_dir():
        data_dir = data_dir / "aclImdb"
    if (data_dir / split).is_dir():
        return _read_folders(data_dir / split)
    if (data_dir / f"{split}.tsv").is_file():
        return _read_tsv(data_dir / f"{split}.tsv")
    raise MissingDataError(
        f"neither {data_dir / split}/ nor {data_dir / (split + '.tsv')} exists. Expected: {LAYOUT}"
    )


def load(
    data_dir: Path, *, max_length: int = 4096, val_fraction: float = 0.1, split_seed: int = 42
) -> TaskData:
    """Load IMDB as byte-level sequences; validation is a fixed random part of train."""
    sets = {}
    for split in ("train", "test"):
        texts, labels = read_split(data_dir, split)
        sets[split] = ([bytes_to_ids(t, max_length) for t in texts], labels)
    xs, ys = sets["train"]
    tr, va = split_indices(len(xs), (1 - val_fraction, val_fraction), split_seed)
    return TaskData(
        name="imdb",
        train=SequenceDataset(subset(xs, tr), subset(ys, tr)),
        val=SequenceDataset(subset(xs, va), subset(ys, va)),
        test=SequenceDataset(*sets["test"]),
        n_classes=2,
        seq_len=max_length,
        vocab_size=257,
        pad_id=0,
        collate=PadCollate(pad_value=0),
    )
