"""Callbacks: small objects that react to the training loop's events (PyTorch Lightning style).

:class:`s4dss.train.Trainer` runs epochs of optimizer steps, validates, checkpoints and
resumes; everything else - the progress bar, the train records in ``metrics.jsonl``,
regularisers, in-training reduction - is a :class:`Callback` plugged into it. A callback
overrides only the events it needs:

==========================  ======================================================================
event                       when
==========================  ======================================================================
``on_load_checkpoint``      on resume, before the model weights are loaded (restore an architecture
                            the run changed, e.g. reduced layers)
``load_state_dict``         on resume, with what :meth:`Callback.state_dict` returned at the
                            checkpoint
``on_train_start``          once per process, after setup and resume, before the first step
``on_epoch_start``          before the first (or, resumed, the next) step of an epoch
``extra_loss``              every step, after the forward pass: a tensor added to the loss
                            (regularisers), or ``None``
``on_step_end``             after the optimizer and scheduler steps, with a :class:`StepOutput`
``on_epoch_train_end``      the epoch's steps are over (finished, interrupted or ``max_steps``)
``on_epoch_end``            after the epoch's validation, before ``last.pt`` is written; may change
                            the model (:meth:`s4dss.train.Trainer.replace_modules`)
``on_checkpoint``           after ``last.pt`` / ``best.pt`` is written
``on_train_end``            at the end of :meth:`~s4dss.train.Trainer.fit`, with the summary dict
                            (callbacks may add entries before ``summary.json`` is written)
``state_dict``              what to store in checkpoints (``torch.load(weights_only=True)``-safe
                            values: tensors, numbers, strings, lists, dicts)
==========================  ======================================================================

Epochs are numbered from 1 everywhere a user sees them (progress bar, ``metrics.jsonl``,
``summary.json``): during and at the end of the k-th pass over the training data the loop's
``epoch`` attribute is ``k - 1`` (epochs completed before it) and :attr:`Trainer.epoch_number
<s4dss.train.Trainer.epoch_number>` is ``k``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch


@dataclass
class StepOutput:
    """What one optimizer step produced (passed to :meth:`Callback.on_step_end`).

    Attributes
    ----------
    loss : float
        Data loss (cross-entropy) averaged over the global batch, without extra loss terms.
    logits : torch.Tensor
        ``(B_local, n_classes)``, this rank's part of the batch (detached use only).
    y : torch.Tensor
        ``(B_local,)`` labels.
    grad_norm : float
        Global gradient norm before clipping (NaN without clipping).
    """

    loss: float
    logits: torch.Tensor
    y: torch.Tensor
    grad_norm: float


class Callback:
    """Base class: every event is a no-op; subclasses override what they need.

    ``state_key`` names the callback's entry in the checkpoint (default: the class name; two
    callbacks of one class in a run need distinct keys).
    """

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def on_load_checkpoint(self, loop, checkpoint: dict) -> None:
        """Resume: ``checkpoint`` is the loaded ``last.pt``; the model is not loaded yet."""

    def load_state_dict(self, state: dict) -> None:
        """Resume: restore what :meth:`state_dict` returned."""

    def state_dict(self) -> dict:
        """State to checkpoint (empty: nothing stored)."""
        return {}

    def on_train_start(self, loop) -> None:
        """Setup (and resume) done, before the first step of this process."""

    def on_epoch_start(self, loop) -> None:
        """Before the first step of an epoch (or the next step, resumed mid-epoch)."""

    def extra_loss(self, loop) -> torch.Tensor | None:
        """A scalar added to this step's loss (after the forward pass), or ``None``."""
        return None

    def on_step_end(self, loop, out: StepOutput) -> None:
        """After the optimizer (and per-step scheduler) step; counters already advanced."""

    def on_epoch_train_end(self, loop) -> None:
        """The epoch's steps are over (also when interrupted or stopped by ``max_steps``)."""

    def on_epoch_end(self, loop, val: dict) -> None:
        """After the epoch's validation (``val``: loss, acc, n, timings), before ``last.pt``."""

    def on_checkpoint(self, loop, path) -> None:
        """A checkpoint was written to ``path``."""

    def on_train_end(self, loop, summary: dict) -> None:
        """The run ended (finished or interrupted); ``summary`` may be extended in place."""


class MetricsLog(Callback):
    """Writes a ``train`` record to ``metrics.jsonl`` every ``every`` optimizer steps.

    The record holds the epoch number (1-based), the step, the global-batch data loss, this
    rank's batch accuracy, the gradient norm, the learning rates, and whatever other callbacks
    logged for this step with :meth:`s4dss.train.Trainer.log_step` (e.g. a regulariser's value).
    """

    def __init__(self, every: int):
        self.every = int(every)

    def on_step_end(self, loop, out: StepOutput) -> None:
        if loop.global_step % self.every:
            return
        loop.log(
            {
                "event": "train",
                "epoch": loop.epoch_number,
                "step": loop.global_step,
                "loss": out.loss,  # mean over the global batch
                "acc": float((out.logits.argmax(-1) == out.y).float().mean()),  # rank 0
                "grad_norm": out.grad_norm,
                "lr": [g["lr"] for g in loop.opt.param_groups],
                **loop.step_logs,
            }
        )


class ProgressBar(Callback):
    """A tqdm bar per epoch (``epoch k/E``, 1-based) on rank 0, with the running loss."""

    def __init__(self):
        self.bar = None

    def on_epoch_start(self, loop) -> None:
        if loop.rank != 0:
            return
        from tqdm import tqdm

        self.bar = tqdm(
            total=loop.steps_per_epoch,
            initial=loop.step_in_epoch,
            desc=f"epoch {loop.epoch_number}/{loop.cfg.epochs}",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=1.0,  # redraws cost time and flood non-terminal logs
        )

    def on_step_end(self, loop, out: StepOutput) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{out.loss:.4f}")

    def on_epoch_train_end(self, loop) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
