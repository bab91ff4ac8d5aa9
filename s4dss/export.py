r"""Export an S4 model's step (recurrent) mode: one token in, logits and the new state out.

The step mode of :class:`~s4dss.S4Model` (:meth:`~s4dss.S4Model.step`) in real arithmetic
(:meth:`~s4dss.dss.DSS.step` with a real state), as a function of plain tensors:

.. code-block:: text

    logits (B, d_output), new_state (B, S) = step(x (B,) int64 tokens | (B, d_input), state (B, S))

with the whole model state flattened into one real vector per sequence, in this order:

- for each layer ``i``: its state ``[Re s, Im s]`` ``(H, 2 N_i)``, row-major (``H * 2 N_i``);
- the running sum of the last layer's features ``(H,)`` (mean pooling);
- the number of tokens seen so far ``(1,)`` (a float; exact below 2^24).

Start from zeros (:meth:`StepModel.initial_state`); the logits after ``t`` tokens are what the
convolution mode gives for the sequence so far. A reduced model (``s4dss reduce``) has a state
of ``O(n_layers H r)`` instead of ``O(n_layers H N)``.

:func:`export_onnx` writes it as an ONNX model (opset 20, batch dimension dynamic) that
onnxruntime runs; the state layout is also stored in the model's metadata (``s4dss_state``,
JSON). Command line: ``python -m s4dss export CHECKPOINT --format onnx --out FILE``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from s4dss.model import S4Model

FORMATS = ("onnx",)
OPSET = 20  # the first with a Gelu operator (fewer nodes: per-node overhead dominates)


class StepModel(nn.Module):
    """:meth:`S4Model.step` with real states, as ``(x, flat_state) -> (logits, new_state)``.

    Parameters
    ----------
    model : S4Model
        Put in eval mode; its step caches are (re)built (``setup_step(L)``).
    L : int, optional
        Sequence length, required for ``mode="softmax"`` (its kernel depends on it).
    """

    def __init__(self, model: S4Model, L: int | None = None):
        super().__init__()
        if not isinstance(model, S4Model):
            raise TypeError(f"StepModel needs an s4dss.S4Model, got {type(model).__name__}")
        model.eval()
        model.setup_step(L)
        self.model = model
        self.H = int(model.config["d_model"])
        self.orders = [layer.N for layer in model.layers]
        self.state_size = sum(self.H * 2 * n for n in self.orders) + self.H + 1
        self.vocab = model.config.get("vocab_size") is not None

    def layout(self) -> dict:
        """The flat state's layout (module docstring), JSON-serialisable."""
        offsets, at = [], 0
        for n in self.orders:
            offsets.append({"offset": at, "shape": [self.H, 2 * n]})
            at += self.H * 2 * n
        return {
            "layers": offsets,
            "pool_sum": {"offset": at, "shape": [self.H]},
            "count": {"offset": at + self.H, "shape": [1]},
            "size": self.state_size,
            "input": "tokens (B,) int64" if self.vocab else f"(B, {self.model.config['d_input']})",
            "pool": self.model.pool,
        }

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Zeros ``(B, state_size)`` in the model's dtype."""
        w = self.model.decoder.weight
        return torch.zeros(batch_size, self.state_size, dtype=w.dtype, device=w.device)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A valid ``x`` for tracing: token 0, or zeros ``(B, d_input)``."""
        w = self.model.decoder.weight
        if self.vocab:
            return torch.zeros(batch_size, dtype=torch.long, device=w.device)
        return torch.zeros(batch_size, self.model.config["d_input"], dtype=w.dtype, device=w.device)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        B = state.shape[0]
        z = m.encoder(x)  # (B H)
        new, at = [], 0
        for i, (layer, n) in enumerate(zip(m.layers, self.orders, strict=True)):
            size = self.H * 2 * n
            S = state[:, at : at + size].reshape(B, self.H, 2 * n)  # (B H 2n)
            y, S = layer._step_real(m._pre(i, z), S)  # (B H)
            z = m._post(i, z, layer._mix(y))  # (B H)
            new.append(S.reshape(B, size))  # (B H*2n)
            at += size
        total = state[:, at : at + self.H] + z  # (B H)
        count = state[:, at + self.H :] + 1  # (B 1)
        pooled = total / count if m.pool == "mean" else z  # (B H)
        return m.decoder(pooled), torch.cat(new + [total, count], dim=-1)  # (B d_out), (B S)


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's known, harmless noise (optional torchvision ops it skips, one
    shared batch dimension named once, a pytree deprecation inside torch)."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: S4Model, path, L: int | None = None) -> Path:
    """Write ``model``'s step mode (:class:`StepModel`) as ONNX to ``path``.

    Inputs ``x`` and ``state``, outputs ``logits`` and ``new_state``; the batch dimension is
    dynamic. The layout of ``state`` is stored as JSON in the metadata entry ``s4dss_state``.

    Returns
    -------
    Path
        ``path``.
    """
    import onnx

    path = Path(path)
    step = StepModel(model, L).eval()
    args = (step.example_input(2), step.initial_state(2))
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            step,
            args,
            input_names=["x", "state"],
            output_names=["logits", "new_state"],
            dynamic_shapes=({0: batch}, {0: batch}),
            opset_version=OPSET,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "s4dss_state", json.dumps(step.layout())
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)  # atomic: no half-written model under the final name
    return path
