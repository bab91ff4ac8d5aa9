"""Long Range Arena data: generators, release-format loaders and a task registry.

Use :func:`get_task`::

    task = get_task("listops-synth", data_dir="data/listops-small", n_train=2000)
    task.train, task.val, task.test, task.vocab_size, task.n_classes, task.collate

Tasks: ``listops`` (real ``listops-1000``), ``listops-synth`` (generated, written in the release
format then read back), ``pathfinder`` (real ``pathfinder32``), ``pathfinder-synth``
(generated), ``cifar``, ``imdb``, ``aan``, ``digits`` and ``digits-256`` (built in, no
download; ``digits-256`` holds each pixel for 4 steps), ``acsf1`` and ``osuleaf`` (UCR problems
shipped inside ``aeon<1.7``) and ``majority`` (an easy in-memory synthetic task for smoke tests).
"""

from __future__ import annotations

from s4dss.data.common import (
    DataError,
    MalformedDataError,
    MissingDataError,
    PadCollate,
    TaskData,
)
from s4dss.data.registry import TASKS, get_task

__all__ = [
    "DataError",
    "MalformedDataError",
    "MissingDataError",
    "PadCollate",
    "TASKS",
    "TaskData",
    "get_task",
]
