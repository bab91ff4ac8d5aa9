"""Sequential grey CIFAR-10 (LRA "Image"): the python pickle batches, read as length-1024 rows.

Expected layout (the official ``cifar-10-python.tar.gz`` unpacked)::

    <data_dir>/data_batch_1 ... data_batch_5, test_batch

Each batch is a pickle of a dict with ``b"data"`` (uint8, 10000 x 3072, red then green then
blue planes of 32x32 row-major) and ``b"labels"`` (list of 0..9). ``<data_dir>`` may also be the
parent of ``cifar-10-batches-py``.

Safe loading: a pickle can name any Python callable and have the loader call it, so a crafted
``data_batch_1`` could run code under a plain ``pickle.load``. The batches are read with
:class:`BatchUnpickler`, which resolves only the globals an array reconstruction needs
(:data:`ALLOWED_GLOBALS`) and refuses every other one before anything is called.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

try:  # numpy >= 2 keeps the array pickling helpers in numpy._core
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

from s4dss.data.common import (
    MalformedDataError,
    PadCollate,
    SequenceDataset,
    TaskData,
    pixels_to_features,
    require_file,
    split_indices,
    subset,
)

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
LAYOUT = "<data_dir>/{data_batch_1..data_batch_5,test_batch} (CIFAR-10 python pickle batches)"
# ITU-R 601 luma, the weights of tf.image.rgb_to_grayscale used by LRA
GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])


def _latin1_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as Python 3 uses it to write ``bytes`` at pickle protocol <= 2."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return codecs.encode(text, "latin1")


#: The only globals a batch may reference. The release (Python 2 ``cPickle``, protocol 2, numpy
#: 1.x) references exactly ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
#: ``numpy.dtype`` (the ``data`` array; everything else is dicts, lists, byte strings and ints,
#: which need no global). The other entries are the same array reconstruction as numpy >= 2 and
#: Python 3 spell it when a batch is re-pickled (``numpy._core``, ``bytes`` written through
#: ``_codecs.encode`` at protocols <= 2, ``_frombuffer`` at protocol 5).
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other global is refused
    (``pickle.UnpicklingError``) before it could be called."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it references the global {module}.{name}, which a CIFAR-10 batch never does "
                "(refused, nothing was run: only dicts, lists, byte strings, ints and numpy "
                "arrays are loaded)"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it holds a persistent id, which a CIFAR-10 batch never does")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickle batch; returns RGB images (n, 3, 32, 32) uint8 and labels (n,).

    Raises
    ------
    MissingDataError
        The file does not exist.
    MalformedDataError
        Not a CIFAR-10 batch: not a pickle, a pickle referencing anything but numpy's array
        reconstruction (refused unexecuted), no ``b"data"`` uint8 ``n x 3072`` array, or no
        ``n`` labels in 0..9.
    """
    path = require_file(path, LAYOUT)
    what = "a pickled dict with b'data' uint8 n x 3072 and b'labels' in 0..9"
    try:
        with open(path, "rb") as f:
            d = BatchUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - nothing can run; any failure means a bad file
        raise MalformedDataError(
            f"{path} is not a CIFAR-10 python batch ({what}): {type(e).__name__}: {e}"
        ) from None
    if not isinstance(d, dict):
        raise MalformedDataError(
            f"{path} is not a CIFAR-10 python batch ({what}): it holds a {type(d).__name__}"
        )
    data = d.get(b"data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        found = type(data).__name__ + (f" {data.dtype}" if isinstance(data, np.ndarray) else "")
        raise MalformedDataError(
            f"{path} is not a CIFAR-10 python batch ({what}): b'data' is {found}"
        )
    if b"labels" not in d:
        raise MalformedDataError(f"{path} is not a CIFAR-10 python batch ({what}): no b'labels'")
    try:
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise MalformedDataError(f"{path}: b'labels' are not integers ({e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise MalformedDataError(
            f"{path}: b'data' has shape {data.shape} and b'labels' shape {labels.shape}; "
            "expected n x 3072 and n labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise MalformedDataError(
            f"{path}: labels range over {labels.min()}..{labels.max()}; CIFAR-10 has 0..9"
        )
    return data.reshape(-1, 3, 32, 32), labels


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(n, 3, 32, 32) uint8 -> (n, 1024) uint8 grey, rounded as tf.image.rgb_to_grayscale does."""
    grey = np.tensordot(GREY_WEIGHTS, rgb.astype(np.float64), axes=([0], [1]))  # (n, 32, 32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8).reshape(len(rgb), 1024)


def _tokens(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int64)


def load(
    data_dir: Path, *, val_fraction: float = 0.1, split_seed: int = 42, tokens: bool = False
) -> TaskData:
    """Load grey sequential CIFAR-10.

    Parameters
    ----------
    data_dir : Path
        Folder with the pickle batches (or its parent holding ``cifar-10-batches-py``).
    val_fraction : float
        Part of the 50000 training images held out for validation (fixed random split).
    tokens : bool
        If True, pixels are token ids 0..255 (vocab 256, LRA's transformer input); otherwise
        one real feature per pixel scaled to [-1, 1] (the S4 setting). Either way the grey
        value is rounded to 8 bits first, as LRA's ``tf.image.rgb_to_grayscale`` does.
    """
    data_dir = Path(data_dir)
    if (data_dir / "cifar-10-batches-py").is_dir():
        data_dir = data_dir / "cifar-10-batches-py"
    parts = [read_batch(data_dir / name) for name in TRAIN_BATCHES]
    x_train = to_grey(np.concatenate([p[0] for p in parts]))
    y_train = np.concatenate([p[1] for p in parts])
    rgb_test, y_test = read_batch(data_dir / "test_batch")
    x_test = to_grey(rgb_test)
    tr, va = split_indices(len(x_train), (1 - val_fraction, val_fraction), split_seed)
    f = _tokens if tokens else pixels_to_features  # grey stays uint8 in memory
    return TaskData(
        name="cifar",
        train=SequenceDataset(subset(x_train, tr), y_train[tr], f),
        val=SequenceDataset(subset(x_train, va), y_train[va], f),
        test=SequenceDataset(x_test, y_test, f),
        n_classes=10,
        seq_len=1024,
        vocab_size=256 if tokens else None,
        d_input=None if tokens else 1,
        collate=PadCollate(pad_value=0),
    )
